"""`kefu kb check` for custom actions: every entry's `action` exists in the configured action set.

The set is `actions.modules` loaded with rasa-sdk's ActionExecutor, or the action server's `GET /actions`.
An unreachable server is a warning (the FAQ itself may be fine); an unknown action name is an error.
"""

from __future__ import annotations

from gateway.actions.runners import runner_for
from gateway.actions.settings import ActionsSettings
from kb.model import KnowledgeBase, Problem
from kb.slots import intent_entry


async def check_actions(kb: KnowledgeBase, settings: ActionsSettings) -> list[Problem]:
    """Problems with the kb's action names against the configured action set (none when it uses none)."""
    entries = [e for e in kb.entries if e.action]
    entries += [e for e in map(intent_entry, kb.intents) if e is not None]
    if not entries:
        return []
    first = entries[0].source
    where = (first.file, first.line) if first else ("<faq>", 1)
    runner = runner_for(settings.url, settings.modules, settings.timeout_s)
    if runner is None:
        message = (
            f"{len(entries)} entries name an action, but the gateway config has no actions.url or "
            "actions.modules: they answer with their 'answer' (or an offer of 转人工) until one is set"
        )
        return [Problem(*where, message, entries[0].id, severity="warning")]
    source = settings.url or ", ".join(settings.modules)
    try:
        await runner.start()
        names = set(await runner.names())
    except Exception as exc:
        message = f"could not list the actions of {source} ({type(exc).__name__}); action names not checked"
        return [Problem(*where, message, severity="warning")]
    finally:
        await runner.close()
    problems: list[Problem] = []
    for entry in entries:
        if entry.action not in names:
            ref = entry.source
            known = ", ".join(sorted(n for n in names if not n.startswith("validate_"))) or "none"
            problems.append(
                Problem(
                    ref.file if ref else "<faq>",
                    ref.line if ref else 1,
                    f"action '{entry.action}' is not served by {source} (it has: {known})",
                    entry.id,
                )
            )
    return problems
