"""Checks that each shuttle model in models.rs finds the bug it is there for.

A model that passes against a broken build is not a model. This script re-introduces each bug in
turn (a small text substitution in the core's source), runs the model meant to catch it, expects
it to FAIL, and restores the source. Run it with `make check-models` after changing the models or
the code they watch (it builds once per bug: about 15 minutes on 2 cores); it is not part of
`make test`.
"""

import os
import signal
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

# (the bug, file, the text that fixes it, the text that brings it back, the models that must fail)
MUTANTS = [
    (
        "a lower max_concurrency drops a queued leader",
        "core/src/concurrency.rs",
        "                    Some(w) => {\n                        st.queue.push_front(w);\n",
        "                    Some(_) => {\n",
        ["slots_survive_a_lower_limit"],
    ),
    (
        "a nested computation waits for a slot of its own",
        "core/src/flight/mod.rs",
        "            true => Slots::unlimited(),",
        "            true => self.cache.slots.acquire(),",
        ["nested_computations_share_their_callers_slot"],
    ),
    (
        "invalidate leaves the running flight joinable",
        "core/src/flight/mod.rs",
        "        shard.side().detach(key);\n        shard.take_value(hash, key)",
        "        shard.take_value(hash, key)",
        ["a_read_after_invalidate_sees_the_write"],
    ),
    (
        "clear leaves the running flights joinable and storable",
        "core/src/flight/mod.rs",
        "        self.store.clear(|f| f.0.clear());",
        "        self.store.clear(|_| {});",
        ["a_read_after_clear_sees_the_write", "tagged_stores_do_not_outlive_clear"],
    ),
    (
        "invalidate_tag leaves the flights of that tag joinable",
        "core/src/flight/mod.rs",
        "        self.store.for_each_side(|f| !f.is_empty(), |f| f.detach_tagged(tag));\n",
        "",
        ["a_read_after_invalidate_tag_sees_the_write"],
    ),
    (
        "a lease dropped unfinished does not hand the key over",
        "core/src/flight/mod.rs",
        "        self.finish(Completion::HandedOver);",
        "        self.finished = true;",
        ["a_dropped_lease_hands_the_key_over"],
    ),
    (
        "a computation is abandoned while a waiter still waits",
        "core/src/wait.rs",
        "if st.live == 0 && st.value.is_none()",
        "if st.live <= 1 && st.value.is_none()",
        ["waiters_that_give_up_stop_alone"],
    ),
    (
        "a wait cycle across threads goes undetected",
        "core/src/flight/context.rs",
        "        if ancestors.computes(f) {\n            return None;\n        }\n",
        "",
        ["a_wait_cycle_across_threads_is_an_error"],
    ),
    (
        "an insert that raced with a lower limit is not checked",
        "core/src/flight/mod.rs",
        "            Some(_) if stored => self.store.enforce_limit(),",
        "            Some(_) if stored => {}",
        ["a_lower_limit_holds_against_concurrent_stores"],
    ),
    (
        "a hit that takes a refresh does not mark the entry as refreshing",
        "core/src/store/mod.rs",
        "compare_exchange(at, REFRESHING, Relaxed, Relaxed)",
        "compare_exchange(at, at, Relaxed, Relaxed)",
        ["a_due_value_is_refreshed_once_while_hits_get_a_value"],
    ),
    (
        "a refresh that ends after an invalidation touches the key's new value",
        "core/src/store/mod.rs",
        "        if !self.refreshing(hash, key) {\n            return false;\n        }\n        if keep {",
        "        if keep {",
        ["a_read_after_invalidate_sees_the_write_during_a_refresh"],
    ),
]


def run_model(name: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, COOPCACHE_MODEL_ITERATIONS=os.environ.get("COOPCACHE_MODEL_ITERATIONS", "5000"))
    return subprocess.run(
        ["cargo", "test", "-q", "-p", "coopcache", "--release", "--features", "shuttle",
         "--test", "models", "--", "--exact", name],
        cwd=ROOT, env=env, capture_output=True, text=True,
    )


def main() -> int:
    # A kill must not leave a bug in the source: end through the `finally` that restores it.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    missed = []
    for bug, file, fixed, broken, models in MUTANTS:
        path = ROOT / file
        source = path.read_text()
        if source.count(fixed) != 1:
            print(f"STALE  {bug}: the fix is not found once in {file}; update this script")
            missed.append(bug)
            continue
        path.write_text(source.replace(fixed, broken))
        try:
            for model in models:
                r = run_model(model)
                out = r.stdout + r.stderr
                if "error[" in out or "could not compile" in out:
                    print(f"BROKEN {bug}: the mutant does not compile\n{out[-2000:]}")
                    missed.append(bug)
                elif r.returncode != 0 and "test result: FAILED" in out:
                    print(f"caught {bug}: {model} failed")
                else:
                    print(f"MISSED {bug}: {model} passed against the broken build")
                    missed.append(bug)
        finally:
            path.write_text(source)
    print(f"{len(MUTANTS) - len(missed)} of {len(MUTANTS)} bugs caught")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
