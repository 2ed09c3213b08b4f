"""`edgefleet units`: render, verify and install the hardened systemd units (deploy/systemd/).

The templates under `deploy/systemd/` carry `@NAME@` placeholders for what differs between
boxes: the installed `edgefleet` executable, the config and state directories, the content
disks, the service user, the timer times. Rendering is a pure function (settings in, unit texts
out) that refuses values systemd would misread; `verify` and `security` wrap `systemd-analyze`
(Debian package systemd, 252+) and `install` writes the units where systemd reads them.

    edgefleet units render --out DIR        write the rendered units to DIR
    edgefleet units verify DIR              systemd-analyze verify: any warning fails
    edgefleet units security DIR            exposure score of every unit (offline)
    edgefleet units install [--create-user] render into /etc/systemd/system, print next steps

The modules, one concern each:

    settings.py   the unit names, the per-box Settings, UnitError
    render.py     pure: settings → placeholder values → rendered unit texts; the templates' home
    hardening.py  pure: the hardening policy, unit directives, SystemCallFilter=, exposure text
    analyze.py    runs systemd-analyze: verify, security (exposure), syscall-filter groups
    install.py    writes units, creates the service user and group, says what to do next
    cli.py        the command line (`edgefleet units ...`, via edgefleet/cli.py)
"""
