"""Hostile clients against one edge while a normal client measures its latency (issue 7).

    python -m bench.hostile [--duration-per-attack 15] [--idle 5000] [--tool auto] ...

One real edge (`edgefleet edge serve`, 2 workers, signed URLs required, a file of --file-mib
MiB imported, every limit at its default: header_timeout_s 10, keep_alive_timeout_s 15,
send_timeout_s 60, max_ranges 16, max_connections_per_worker 10000) is attacked in turn by

    slowloris     slowhttptest -H: partial request heads, a header line every few seconds
    slow-read     slowhttptest -X: whole-file requests read a few bytes a second, tiny window
    range-abuse   slowhttptest -R: `Range: bytes=0-,5-0,5-1,...` (the 2011 "Apache Killer")
    idle          --idle connections opened and held (reopened when the edge cuts them)
    all           the four together

while a normal client in its own process (its own GIL) fetches random 64 KiB ranges of the
file with a signed URL on one keep-alive connection, checking every byte, paced like a player
(--normal-rate, 200/s; 0 for back to back). Each attack starts --ramp seconds before the
measurement, so time 0 of a phase is --ramp seconds into the attack. Before, during and
after each attack the edge's RSS (supervisor, workers, keeper) is sampled and /metrics is
scraped for open connections and error counters.

Verdict per attack: the normal client's p99 ≤ 2x its unloaded p99 (plus --p99-floor-ms, 0 by
default: the issue's target as written), no failed normal request, and memory bounded: peak
RSS under attack ≤ unloaded RSS + --rss-bound-mib. Exit 0 when every attack passes, else 1.

slowhttptest (Debian: apt-get install slowhttptest) is used when present; otherwise (or with
--tool python) small Python attackers of the same shapes run in their own process. The idle
connections are always held by a Python process (slowhttptest has no idle mode).
Results go to bench/results/hostile-<UTC timestamp>.md and .json.

The modules, one concern each:

    __main__.py        the command line: options in, exit status out
    options.py         the options (argparse) and the attack names
    run.py             the run: the edge, the phases in sequence, the report at the end
    verdicts.py        pure: latency summary of a phase, its verdict, the verdict over rounds
    report.py          pure: the printed table and the markdown report; writing the results
    probes.py          the edge's side: RSS of its processes, /metrics, a sampling thread
    cages.py           the attackers' CPU cgroup (they stand for other machines)
    attackers.py       an attacking process: slowhttptest's command line and summary
    python_attacker.py `python -m bench.hostile.python_attacker`: the Python attackers
    player.py          `python -m bench.hostile.player`: the normal client, and its handle
    httpread.py        one Content-Length framed HTTP/1.1 response read off a socket
"""
