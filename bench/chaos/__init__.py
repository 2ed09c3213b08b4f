"""The chaos drill: break a local fleet on purpose under playback load, report what viewers felt.

    python -m bench.chaos [--duration 180] [--seed N] [--users N] [--out DIR]    (make chaos)

It starts a fleet on 127.0.0.1 (bench/chaos/fleet.py: control, two steering replicas, two edges
in each of two sites, an origin), runs `--users` viewers in-process (bench/player.py sessions
over aiohttp, each from a client address of its site, steering replicas tried in turn) and,
on a schedule drawn from `--seed`, injects faults one after another:

    edge-kill        SIGKILL an edge's process group; start it again after the hold
    edge-stop        SIGSTOP / SIGCONT an edge (a hung box)
    steering-kill    SIGKILL a steering replica; start it again
    control-restart  SIGTERM control, start it again on its port (it relearns from heartbeats)
    edge-drain       `edgefleet control drain`, then `--undo`
    edge-delay       every answer of an edge held back (its fault-delay-ms switch)
    disk-fail        an edge's disk fails (the edge's fault-disks hook: its files leave the index)

Every byte a player receives is compared with the source file (wrong bytes must be 0). Two
pollers ask both steering replicas every 100 ms, from a client in each site, where they would
send a player; for a fault that takes an appliance out (kill, stop, drain) the drill records
the last answer that still listed it: the time from the fault to the last client steered to
it, against the bound of 3 heartbeat intervals + 1 snapshot interval.

Results: a printed table and bench/results/chaos-<UTC>/ (report.md, report.json, timeline.png
with the faults marked, the services' logs). Exit status 0 when every target holds (0 sessions
failed, 0 wrong bytes, every dead appliance out of steering within the bound), 1 otherwise.

The schedule, the steering watch and the verdict are pure (tested without a fleet); the
asyncio shell (drill.py) only performs and times what they decide. The modules:

    __main__.py  `python -m bench.chaos` (`make chaos`)
    cli.py       the options and the run: fleet up, schedule, drill, report, exit status
    schedule.py  pure: the fault kinds, how long each holds, the seeded schedule
    watch.py     pure: when a broken appliance left steering's answers
    verdict.py   pure: the targets the drill must meet
    drill.py     the asyncio shell: viewers, the steering pollers, fault injection and repair
    report.py    report.json's document, the printed table (report.md), the results directory
    fleet.py     the drill's fleet: control, two steering replicas, four edges, an origin
"""
