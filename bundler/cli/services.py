"""The commands that act on either side: add-service, remove-service and switch edit a project's
bundle.toml, or change the services of the built bundle they run in (bundle.tree.acting_on says
which)."""

from __future__ import annotations

from pathlib import Path

import click

from bundler.cli import output
from bundler.cli.options import project_folder, root_option, spec_path, timeout_option
from bundler.cli.shell import complete, complete_service_then_version
from bundler.errors import UsageError


@click.command("add-service")
@click.argument("name")
@click.option("--python", default="base", show_default=True, metavar="ENV", shell_complete=complete("envs"),
              help="The interpreter: base, pyocr or envs/pyocr.")
@click.option("--code", required=True, metavar="VERSION", help="The code version it runs.",
              shell_complete=complete("versions"))
@click.option("--command", required=True, metavar="CMD",
              help="The command; a leading 'python' is the chosen interpreter.")
@click.option("-e", "--env", "environment", multiple=True, metavar="KEY=VALUE",
              help="An environment variable (repeatable).")
@click.option("--numprocs", type=click.IntRange(min=1), help="How many processes to run.")
@click.option("--group", metavar="GROUP", help="Add it to this group (created if needed).",
              shell_complete=complete("groups"))
@click.option("--set", "options", multiple=True, metavar="KEY=VALUE",
              help="Any other service key: a supervisor program option (--set startsecs=10, "
              "--set user=api), --set max_rss=512MB, --set 'health={ http = \"http://127.0.0.1:"
              "8080/health\", every = 10 }'. VALUE is read as TOML, else as a string.")
@root_option
@timeout_option
@click.pass_context
def add_service(ctx: click.Context, name: str, python: str, code: str, command: str,
                environment: tuple[str, ...], numprocs: int | None, group: str | None,
                options: tuple[str, ...], root: Path | None, timeout: float) -> None:
    """Declare service NAME: a supervisor program on an interpreter and a code version.

    In a bundle the service also starts at once (the others are left alone); if it does not
    reach RUNNING it is removed again and the command exits 1 with the end of its log.

    \b
    Examples:
      bundler add-service svc3 --python envs/pyocr --code v3 \\
          --command "python -m service.sam.run" -e PYTHON_APP_DEBUG=false --set startsecs=5
      /opt/smartbox/bin/bundler add-service svc11 --code v4 --command "python -m service.sam.run"
    """
    from bundler.bundle.tree import acting_on
    from bundler.spec import edit

    env = dict(edit.parse_assignment(e, "--env") for e in environment)
    opts = dict(edit.parse_option(o) for o in options)
    bundle = acting_on(project_folder(ctx), root)
    if bundle is not None:
        from bundler.server import services

        outcome, entries = services.add_service(bundle, name, python, code, command, env,
                                                numprocs, group, opts, timeout)
        output.report(outcome, entries, output.changed, f"{name} was removed again")
        return
    edit.edit(spec_path(ctx), lambda doc: edit.add_service(
        doc, name, python, code, command, env, numprocs, group, opts))
    click.echo(f"added service {name} to {spec_path(ctx)}")


@click.command("remove-service")
@click.argument("name", shell_complete=complete("services"))
@root_option
@timeout_option
@click.pass_context
def remove_service(ctx: click.Context, name: str, root: Path | None, timeout: float) -> None:
    """Remove service NAME (and it from its group). In a bundle it is stopped first; the
    others keep running.

    \b
    Example:
      bin/bundler remove-service svc11
    """
    from bundler.bundle.tree import acting_on
    from bundler.spec import edit

    bundle = acting_on(project_folder(ctx), root)
    if bundle is not None:
        from bundler.server import services

        outcome, entries = services.remove_service(bundle, name, timeout)
        output.report(outcome, entries, output.changed, f"{name} is back")
        return
    edit.edit(spec_path(ctx), lambda doc: edit.remove_service(doc, name))
    click.echo(f"removed service {name} from {spec_path(ctx)}")


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("names", nargs=-1, metavar="[SERVICE] [VERSION]",
                shell_complete=complete_service_then_version)
@click.option("--group", metavar="GROUP", help="Switch every service of this group.",
              shell_complete=complete("groups"))
@click.option("--python", metavar="ENV", shell_complete=complete("envs"),
              help="Also (or only) move it to this interpreter: base, pytest or envs/pytest.")
@root_option
@timeout_option
@click.pass_context
def switch(ctx: click.Context, names: tuple[str, ...], group: str | None, python: str | None,
           root: Path | None, timeout: float) -> None:
    """Point SERVICE (or every service of --group) at code VERSION, and/or at interpreter
    --python ENV.

    In a project this edits bundle.toml. In a bundle it also applies the change to the running
    supervisord, restarting only that service (not the rest of its group; the processes of a
    numprocs service one at a time), waits until it is RUNNING and its health probe passes, and
    otherwise rolls back to the previous definition and exits 1 with the end of its log.

    \b
    Examples:
      bundler switch svc3 v2                      # in the project
      /opt/smartbox/bin/bundler switch svc3 v2    # on the server, live
      bin/bundler switch svc1 --python pytest     # another interpreter, same code
      bin/bundler switch --group sam v3
    """
    from bundler.bundle.tree import acting_on

    given = len(names) - (0 if group else 1)
    if (not group and not names) or given not in ((0, 1) if python else (1,)):
        raise UsageError("give SERVICE VERSION, SERVICE --python ENV, or --group GROUP VERSION")
    chosen, version = (None if group else [names[0]]), (names[-1] if given else None)
    bundle = acting_on(project_folder(ctx), root)
    if bundle is not None:
        from bundler.server import services

        outcome, entries = services.switch(bundle, chosen, group, version, timeout, python)
        output.report(outcome, entries, output.changed, output.PREVIOUS_AGAIN)
        return
    from bundler.build.plan import check_switch
    from bundler.spec import edit

    moved = edit.switch_services(spec_path(ctx), chosen, group, version, python, check_switch)
    for name, what in moved.items():
        click.echo(f"{name}: {what}")


@click.command("set")
@click.argument("service", shell_complete=complete("services"))
@click.argument("assignments", nargs=-1, metavar="KEY=VALUE...")
@click.option("--unset", multiple=True, metavar="KEY", help="Remove this key (repeatable).")
@root_option
@timeout_option
@click.pass_context
def set_cmd(ctx: click.Context, service: str, assignments: tuple[str, ...], unset: tuple[str, ...],
            root: Path | None, timeout: float) -> None:
    """Change any key of SERVICE: command, environment (or environment.NAME), numprocs, health,
    max_rss, a supervisor option. VALUE is read as TOML, else as a string.

    In a bundle the change is live and gated like switch: the service restarts (one process at a
    time), must reach RUNNING and pass its health probe, or the old definition comes back.
    `bin/bundler history` shows each key's old and new value; `rollback SERVICE` undoes it.

    \b
    Examples:
      bin/bundler set svc1 environment.PYTHON_APP_DEBUG=true startsecs=5
      bin/bundler set web numprocs=3 'health={ http = "http://127.0.0.1:8080/health" }'
      bundler set svc3 --unset max_rss
    """
    from bundler.bundle.tree import acting_on
    from bundler.spec import edit

    if not assignments and not unset:
        raise UsageError("give at least one KEY=VALUE or --unset KEY")
    values = dict(edit.parse_option(a) for a in assignments)
    bundle = acting_on(project_folder(ctx), root)
    if bundle is not None:
        from bundler.server import services

        outcome, entries = services.set_keys(bundle, service, values, list(unset), timeout)
        output.report(outcome, entries, output.changed, output.PREVIOUS_AGAIN)
        return
    edit.edit(spec_path(ctx), lambda doc: edit.set_keys(doc, service, values, list(unset)))
    click.echo(f"changed service {service} in {spec_path(ctx)}")


COMMANDS = [add_service, remove_service, switch, set_cmd]
