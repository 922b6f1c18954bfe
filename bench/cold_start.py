"""Cold start of every function in both serving modes, beside bare Litestar and bare functions-framework.

(a) Seconds from spawning the process to the first 200 on /health/ready, for each
function under `victor serve NAME` (Litestar on uvicorn) and under
`functions-framework --asgi --target handle --source functions/NAME/main.py`, beside
a bare Litestar app on uvicorn and a bare functions-framework app answering a
constant. Embedded PostgreSQL and Redis are started once beforehand (not counted);
chat has a provider configured (its SDK must not load at start). Interleaved
repeats, medians and p90.

(b) What each function's start imports: `python -X importtime` over importing its
app module and building the app, in a fresh process per function, summed by
top-level package (self time), with the heavy packages that must stay out of it.

Goals (issue 11): chat, tools and health within 1.2x bare Litestar; under
functions-framework within 1.5x bare functions-framework. The embeddings function
is ready only once its model is loaded and is reported beside them, without a goal here.
"""

from __future__ import annotations

import subprocess
from collections import Counter

from bench.support import (
    BARE_FRAMEWORK,
    BARE_LITESTAR,
    PYTHON,
    ROOT,
    Target,
    bare_baselines,
    bare_environment,
    embedded_stores,
    framework_argv,
    measure_cold_starts,
    median,
    model_source,
    percentile,
    print_header,
    print_json,
    quick,
    scratch_dir,
    table,
)

FUNCTIONS = ("health", "chat", "tools", "embeddings")
WITH_GOALS = ("health", "chat", "tools")
LITESTAR_GOAL = 1.2  # `victor serve NAME` at most this many times bare Litestar
FRAMEWORK_GOAL = 1.5  # the functions-framework target at most this many times bare functions-framework
# Packages a function's start must not import (they load on first use): the lazy-import test checks the same.
HEAVY = (
    "mcp",
    "anthropic",
    "openai",
    "lancedb",
    "torch",
    "sentence_transformers",
    "numpy",
    "httpx",
    "jwt",
    "opentelemetry.sdk",
)
_BUILD_APP = """
import sys
import eventing.cli.main  # `victor serve` loads the whole command line first
from common.settings import get_settings
from eventing.cli.serve import load_app
load_app(sys.argv[1], get_settings())
"""


def targets(base_env: dict[str, str], victor_env: dict[str, str]) -> list[Target]:
    """Both modes of every function, then the two bare baselines."""
    found = []
    for name in FUNCTIONS:
        env = {**base_env, **victor_env}
        serve = (PYTHON, "-m", "eventing.cli", "serve", name, "--host", "127.0.0.1")
        found.append(Target(f"victor serve {name}", serve, env))
        found.append(
            Target(
                f"{name} under functions-framework",
                framework_argv(f"functions/{name}/main.py", "handle"),
                env,
            )
        )
    found.extend(bare_baselines(base_env))
    return found


def import_report(name: str, env: dict[str, str]) -> tuple[float, Counter[str], list[str]]:
    """Total import ms of building `name`'s app, self ms by top-level package, and the heavy ones loaded."""
    probe = _BUILD_APP + "print(' '.join(sorted({*sys.modules, *(m.split('.')[0] for m in sys.modules)})))\n"
    done = subprocess.run(
        [PYTHON, "-X", "importtime", "-c", probe, name],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    by_package: Counter[str] = Counter()
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _, module = line.split(":", 1)[1].split("|")
        by_package[module.strip().split(".")[0]] += int(self_us)
    loaded = set(done.stdout.split())
    return sum(by_package.values()) / 1000, by_package, [h for h in HEAVY if h in loaded]


def compile_sources() -> None:
    """Compile the project's modules to bytecode, as the image does at build time (scripts/image_install.sh).

    With PYTHONDONTWRITEBYTECODE set (in the image, and often in a dev shell) nothing is cached
    otherwise, and every start would compile them again: about 30 ms that no deployed start pays.
    """
    packages = ("common", "eventing", "functions", "bench")
    subprocess.run(
        [PYTHON, "-m", "compileall", "-q", *packages], cwd=ROOT, check=True, stdout=subprocess.DEVNULL
    )


def main() -> None:
    short = quick()
    repeats = 3 if short else 7
    print_header(
        "Cold start of every function, both serving modes, beside bare Litestar and functions-framework"
    )
    base_env = bare_environment()
    compile_sources()
    with scratch_dir("victor-bench-cold-") as root, embedded_stores(root) as stores:
        victor_env = {
            **stores,
            "LANCEDB_URI": str(root / "lancedb"),
            "WORKSPACE_DIR": str(root / "workspace"),
            "VICTOR_EMBEDDING_MODEL": model_source(),
            "HF_HUB_OFFLINE": "1",
            # A configured provider whose SDK must load on the first LLM call, not at start.
            "ANTHROPIC_API_KEY": "bench-key",
            "ANTHROPIC_BASE_URL": "http://127.0.0.1:9",
            "VICTOR_LOG_LEVEL": "WARNING",
        }
        logs = root / "logs"
        logs.mkdir()
        all_targets = targets(base_env, victor_env)
        cold = measure_cold_starts(all_targets, repeats, logs)
        imports = {name: import_report(name, {**base_env, **victor_env}) for name in FUNCTIONS}

    wall = {name: [start.wall_s for start in found] for name, found in cold.items()}
    cpu = {name: [start.cpu_s for start in found] for name, found in cold.items()}

    def ratio(figures: dict[str, list[float]], name: str) -> float:
        """`name`'s median over its bare baseline's: functions-framework for that mode, else Litestar."""
        bare = BARE_FRAMEWORK if "functions-framework" in name else BARE_LITESTAR
        return median(figures[name]) / median(figures[bare])

    rows = [
        [
            target.name,
            median(wall[target.name]),
            percentile(wall[target.name], 0.9),
            f"{ratio(wall, target.name):.2f}x",
            median(cpu[target.name]),
            f"{ratio(cpu, target.name):.2f}x",
        ]
        for target in all_targets
    ]
    print(f"(a) spawn to the first 200 on /health/ready, {repeats} interleaved runs each\n")
    print("ratios are over bare functions-framework for that mode's rows, else over bare Litestar\n")
    print(table(["app", "median s", "p90 s", "x bare", "median CPU s", "CPU x bare"], rows))

    print("\n(b) imports while building each app (python -X importtime, self time by top-level package)\n")
    import_rows = []
    for name, (total, by_package, heavy) in imports.items():
        top = ", ".join(f"{package} {us / 1000:.0f}" for package, us in by_package.most_common(6))
        import_rows.append([name, total, top, ", ".join(heavy) or "none"])
    print(
        table(
            ["function", "import ms", "largest packages (ms)", f"loaded of {', '.join(HEAVY)}"], import_rows
        )
    )

    ratios = {}
    goals = []
    for name in WITH_GOALS:
        serve, framework = f"victor serve {name}", f"{name} under functions-framework"
        ratios[name] = {
            "litestar_ratio": ratio(wall, serve),
            "framework_ratio": ratio(wall, framework),
            "litestar_cpu_ratio": ratio(cpu, serve),
            "framework_cpu_ratio": ratio(cpu, framework),
        }
        for app, goal, bare in (
            (serve, LITESTAR_GOAL, "Litestar"),
            (framework, FRAMEWORK_GOAL, "functions-framework"),
        ):
            goals.append(
                [
                    f"{app} vs bare {bare}",
                    f"<= {goal}x",
                    f"{ratio(wall, app):.2f}x (CPU {ratio(cpu, app):.2f}x)",
                    ratio(wall, app) <= goal,
                ]
            )
    print("\ngoals (issue 11)\n")
    print(table(["goal", "target", "measured", "met"], [[*g[:3], "yes" if g[3] else "NO"] for g in goals]))
    print_json(
        "cold_start",
        {
            "seconds": {
                name: {"median": median(v), "p90": percentile(v, 0.9), "cpu_median": median(cpu[name])}
                for name, v in wall.items()
            },
            "ratios": ratios,
            "import_ms": {name: round(total, 1) for name, (total, _, _) in imports.items()},
            "heavy_loaded": {name: heavy for name, (_, _, heavy) in imports.items()},
        },
    )


if __name__ == "__main__":
    main()
