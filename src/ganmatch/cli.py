"""The `ganmatch` command: one subcommand per tool (`ganmatch explore results/<dataset>`, ...).

A subcommand is a function `add_<name>(subparsers)` that adds its parser and sets `run` to a callable
taking the parsed arguments and returning an exit code; add it to `SUBCOMMANDS` to register it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from ganmatch.errors import GanmatchError


def add_explore(subparsers) -> None:
    """`ganmatch explore RESULTS`: browse a run's outputs and edit faces in a local web app."""
    p = subparsers.add_parser(
        "explore", allow_abbrev=False, help="browse a run's results in a local web app (read-only)",
        description="Start a local web app over results/<dataset>/: overview, balance, matched pairs and, "
                    "when the GAN stage ran, a latent editor. Reads the folder, never writes to it.")
    p.add_argument("results", help="a run's results folder, e.g. results/demo")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default 127.0.0.1; any other needs --allow-remote)")
    p.add_argument("--port", type=int, default=8050, help="port to listen on (default 8050; 0 picks a free "
                                                          "one)")
    p.add_argument("--allow-remote", action="store_true",
                   help="allow binding an address other machines can reach (the app has no login)")
    p.add_argument("--weights", default=None,
                   help="generator weights for the editor (default: resources/<dataset>/generator.pt beside "
                        "the results folder's project, <dataset> being the folder's name)")
    p.add_argument("--threads", type=int, default=4, help="request threads of the server (default 4)")
    p.add_argument("--flags", default=None, metavar="FILE",
                   help="CSV file to record flagged (suspect) pairs in (created if absent; outside the "
                        "results "
                        "folder, which stays read-only); without it flagging is off")
    p.add_argument("--render-threads", type=int, default=1,
                   help="torch threads for the generator (default 1; raise it for a 256-1024 px generator)")

    def run(args) -> int:
        from ganmatch.explore.server import serve

        serve(args.results, host=args.host, port=args.port, allow_remote=args.allow_remote,
              weights=args.weights, threads=args.threads, render_threads=args.render_threads,
              flags=args.flags)
        return 0

    p.set_defaults(run=run)


def _merge(base: dict, extra: dict) -> dict:
    """`extra` over `base`, key by key (how Snakemake merges several --configfile files)."""
    out = dict(base)
    for key, value in extra.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key),
                                                                                     dict) else value
    return out


def describe_plan(plan, config: dict) -> str:
    """The run plan as text: what runs, on which embeddings, with which methods and settings, and what is
    skipped."""
    ds = plan.dataset
    lines = [
        f"dataset {ds} (source {config['source']}): writes only resources/{ds}/ and results/{ds}/",
        f"treatment {config['treatment']}; covariates {', '.join(config['covariates'])}"
        + (f"; outcomes {', '.join(config['outcomes'])}" if config["outcomes"] else ""),
        f"GAN stage: {'on, generator ' + str(plan.generator_weights) if plan.project_active else 'skipped'}",
        "embeddings: " + ", ".join(f"{n} ({s['kind']})" for n, s in plan.embeddings.items()),
        f"attribute models on: {plan.attributes_embedding}",
        "matching methods:",
    ]
    from ganmatch.matching.methods import relevant_parameters

    for name, spec in plan.methods.items():
        settings = ", ".join(f"{k}={v}" for k, v in relevant_parameters(spec).items() if k != "method")
        lines.append(f"  {name}: {spec['method']}({settings})")
    lines.append(
        "edit stage: "
        f"{'on, transects along ' + (plan.transect_direction or '(none)') if plan.edit_active else 'off'}"
    )
    if plan.verification:
        lines.append(
            "face verification: " + ", ".join(f"{e} (threshold {t:g})" for e, t in plan.verification.items())
        )
    lines.append("figures: " + ", ".join(f"results/{ds}/figures/{f}.pdf" for f in plan.figures))
    lines += plan.messages
    return "\n".join(lines)


def read_config_file(path: str, what: str = "--configfile") -> dict:
    """A YAML config file as a mapping; a ConfigError naming the file and the fix when it is missing,
    unreadable, not YAML, or not a mapping of keys to values."""
    import yaml

    from ganmatch.errors import ConfigError
    from ganmatch.settings.config import shorten

    try:
        with open(path) as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(
            f"{what} {shorten(path)} does not exist; give the path of a YAML config "
            "(e.g. config/config.yaml)."
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(
            f"{what} {shorten(path)} cannot be read ({type(exc).__name__}: "
            f"{getattr(exc, 'strerror', None) or 'not text'})."
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(
            f"{what} {shorten(path)} is not valid YAML{where}: "
            f"{getattr(exc, 'problem', None) or type(exc).__name__}; fix the file."
        ) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{what} {shorten(path)} holds a {type(data).__name__}, not a mapping of keys to "
            "values "
            "(e.g. 'dataset: demo'); config/config.yaml shows the layout."
        )
    return data


def add_plan(subparsers) -> None:
    """`ganmatch plan [--configfile FILE ...]`: validate a config and print what a run would build."""
    p = subparsers.add_parser(
        "plan",
        allow_abbrev=False,
        help="validate a config and print its run plan (nothing runs)",
        description="Validate the config as the workflow does at start-up (schema, paths, columns, matching "
        "parameters; every default filled in) and print the run plan: GAN stage, embeddings, "
        "matching "
        "methods with their resolved settings, figures and what is skipped.",
    )
    p.add_argument(
        "--configfile",
        nargs="+",
        default=["config/config.yaml"],
        help="config file(s), later ones merged key by key over earlier ones (as snakemake --configfile)",
    )
    p.add_argument("--schema", default="config/schema.yaml", help="the schema (default config/schema.yaml)")

    def run(args) -> int:
        from ganmatch.settings.config import validate_config
        from ganmatch.settings.plan import resolve

        config: dict = {}
        for path in args.configfile:
            config = _merge(config, read_config_file(path))
        config = validate_config(
            config, read_config_file(args.schema, "--schema"), source=" + ".join(args.configfile)
        )
        print(describe_plan(resolve(config), config))
        return 0

    p.set_defaults(run=run)


def add_rulegraph(subparsers) -> None:
    """`ganmatch rulegraph LOG`: the rule graph of a finished run, as Graphviz source (docs/rulegraph.png)."""
    p = subparsers.add_parser(
        "rulegraph",
        allow_abbrev=False,
        help="the rule graph of a finished run's Snakemake log, as Graphviz dot",
        description="Print the rule graph of the jobs a Snakemake log lists (snakemake --rulegraph cannot "
        "see past "
        "the index checkpoint). Render it with: ganmatch rulegraph LOG | dot -Tpng -o "
        "docs/rulegraph.png",
    )
    p.add_argument("log", help="a Snakemake log, e.g. .snakemake/log/<time>.snakemake.log of a full run")

    def run(args) -> int:
        from pathlib import Path

        from ganmatch.report.rulegraph import rule_graph_dot

        sys.stdout.write(rule_graph_dot(Path(args.log).read_text()))
        return 0

    p.set_defaults(run=run)


SUBCOMMANDS: list[Callable] = [add_explore, add_plan, add_rulegraph]


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: `ganmatch <command>: <problem> (see ganmatch <command> --help)`, exit
    2."""

    def error(self, message: str):
        from ganmatch.settings.config import shorten

        message = message if len(message) <= 300 else shorten(message, 300)
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """The top-level parser with every registered subcommand."""
    parser = _Parser(
        prog="ganmatch",
        description="ganmatch tools (the pipeline itself runs with snakemake)",
        allow_abbrev=False,
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for add in SUBCOMMANDS:
        add(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `ganmatch` console script; a GanmatchError prints its message and exits 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except GanmatchError as exc:
        print(f"ganmatch {args.command}: {exc}", file=sys.stderr)
        return 2
    except (OSError, UnicodeDecodeError) as exc:  # a file named on the command line is missing or unreadable
        print(f"ganmatch {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
