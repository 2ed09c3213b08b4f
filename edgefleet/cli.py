"""`edgefleet <service> <command>`: one console script, one sub-command per service.

The dispatcher only knows each service's CLI module by name and imports it on demand, so this
shared package depends on no service.
"""

from __future__ import annotations

import importlib
import sys

SERVICES = {
    "edge": ("edge.cli", "the appliance: serve files, import content, sign URLs"),
    "steering": ("steering.cli", "the steering API: ranked signed URLs to healthy appliances"),
    "control": ("control.cli", "the control plane: heartbeats, fleet state, snapshots"),
    "fill": ("fill.cli", "the nightly fill: plan placements (plan), fill an appliance (run)"),
    "units": ("deploy.units.cli", "render, verify and install the hardened systemd units"),
}


def main(argv: list[str] | None = None) -> int:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0] in ("-h", "--help"):
        print("usage: edgefleet <service> <command> [options]\n\nservices:")
        for name, (_, text) in SERVICES.items():
            print(f"  {name:<10} {text}")
        print("\n'edgefleet <service> --help' lists a service's commands.")
        return 0 if args else 2
    if args[0] == "--version":
        from edgefleet import __version__

        print(f"edgefleet {__version__}")
        return 0
    service = SERVICES.get(args[0])
    if service is None:
        print(
            f"edgefleet: unknown service '{args[0]}' (try: {', '.join(SERVICES)})", file=sys.stderr
        )
        return 2
    module = importlib.import_module(service[0])
    code: int = module.main(args[1:])
    return code


if __name__ == "__main__":
    sys.exit(main())
