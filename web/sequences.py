"""Editing a sequence in the browser (area "campaigns": marketers and admins). Thin: each
route reads the form and calls campaigns.editing (drafts, step_edits, step_preview,
impact, history).

    GET  /admin/sequences                               every campaign: running revision, draft
    GET  /admin/campaigns/{key}/edit?step=KEY           the draft, its steps, a step's editor
                                                        with lint beside each field and preview
    POST /admin/campaigns/{key}/edit/start              open a draft (restart=1: afresh)
    POST /admin/campaigns/{key}/edit/discard
    POST /admin/campaigns/{key}/edit/steps/add          add a step (after one, or first)
    POST /admin/campaigns/{key}/edit/steps/{step}       save a step's fields
    GET  /admin/campaigns/{key}/edit/steps/{step}/remove   what removing it does; confirm
    POST /admin/campaigns/{key}/edit/steps/{step}/remove
    POST /admin/campaigns/{key}/edit/steps/{step}/move  direction=up|down
    POST /admin/campaigns/{key}/edit/steps/{step}/check the same form, unsaved: JSON of the
                                                        lint and preview (the page's script)
    POST /admin/campaigns/{key}/edit/window             the send window
    POST /admin/campaigns/{key}/edit/sign               clinical review of a step, or all
    GET  /admin/campaigns/{key}/edit/publish            impact, the whole course's check
    POST /admin/campaigns/{key}/edit/publish
    GET  /admin/campaigns/{key}/history                 every revision with its diff
    GET  /admin/campaigns/{key}/history/{n}/rollback    the impact of running n again
    POST /admin/campaigns/{key}/history/{n}/rollback
    GET  /admin/static/editor.js                        the editor's script (live preview)

With SEQUENCES_SOURCE=files the editor shows the sequence read-only: edits are made in
the files. Bad input (no such campaign or step, a bad delay, an unknown locale, a field
over 100 KB, a form without its token) is answered with a 4xx page that shows what was
typed again; nothing is half-saved.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from campaigns.content.lint import LintContext
from campaigns.content.review import ReviewError
from campaigns.db import transaction
from campaigns.editing import drafts
from campaigns.editing.history import file_diffs, revision_rows
from campaigns.editing.impact import impact
from campaigns.editing.impact_words import sentence
from campaigns.editing.publishing import check_bundle
from campaigns.editing.step_edits import (
    BODY_KINDS,
    BRANCH_FIELDS,
    EditError,
    StepEdit,
    WindowEdit,
    apply_step_edit,
    apply_window_edit,
    kind_of,
    sent_names,
    step_fields,
)
from campaigns.editing.step_order import NewStep, add_step, move_step, remove_step
from campaigns.editing.step_preview import (
    check_step,
    findings_by_field,
    preview_step,
    step_reviews,
)
from campaigns.models import ROW_ID_MAX
from campaigns.sequences import store
from campaigns.sequences.bundles import Bundle, parse_bundle, read_bundle
from campaigns.sequences.campaign import DefinitionError
from campaigns.sequences.delays import format_delay
from campaigns.sequences.store import PublishError
from web.access import CSRF_FIELD, Staff, current_staff, need
from web.render import ADMIN_HEADERS, admin_page, pages
from workers.runtime import sender_from

log = logging.getLogger(__name__)

Campaigns = Annotated[Staff, Depends(need("campaigns"))]
Number = Annotated[int, Path(ge=1, le=ROW_ID_MAX)]
router = APIRouter(prefix="/admin", dependencies=[Depends(current_staff)])
SCRIPT = FilePath(__file__).parent / "static" / "editor.js"
# The editor's pages run their one script (ours, from this origin) and fetch from it.
EDITOR_CSP = ADMIN_HEADERS["Content-Security-Policy"].replace(
    "default-src 'none';", "default-src 'none'; script-src 'self'; connect-src 'self';"
)
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class Refused(Exception):
    """A 4xx page instead of the route's."""

    def __init__(self, status: int, title: str, message: str, back: str):
        super().__init__(message)
        self.status, self.title, self.message, self.back = status, title, message, back


def _page(template: str, staff: Staff, status: int = 200, **ctx) -> HTMLResponse:
    response = admin_page(template, staff, status, **ctx)
    response.headers["Content-Security-Policy"] = EDITOR_CSP
    return response


def _notice(staff: Staff, refused: Refused) -> HTMLResponse:
    return admin_page(
        "admin_notice.html",
        staff,
        refused.status,
        title=refused.title,
        message=refused.message,
        detail=None,
        back=refused.back,
    )


def _files_mode(request: Request) -> bool:
    return request.app.state.settings.sequences_source == "files"


def _shared(request: Request) -> FilePath:
    return FilePath(request.app.state.settings.templates_dir)


def _lint_context(request: Request) -> LintContext:
    s = request.app.state.settings
    return LintContext(
        FilePath(s.templates_dir),
        s.public_base_url,
        s.brand_name,
        s.postal_address,
        today=request.app.state.clock.now().date(),
        strict=s.publish_requires_review,
        sender=sender_from(s),
    )


def _base(key: str) -> str:
    return f"/admin/campaigns/{key}"


def _running_bundle(request: Request, key: str) -> Bundle:
    """What runs: the newest revision, or (files mode) the campaign's file."""
    state = request.app.state
    if _files_mode(request):
        registry = state.registry
        try:
            return read_bundle(registry.definitions_dir, registry.templates_dir, key)
        except ValueError:
            raise Refused(404, "No such campaign", f"no campaign {key!r}", "/admin") from None
    with state.factory() as session:
        head = store.head(session, key)
        if head is None:
            raise Refused(404, "No such campaign", f"no campaign {key!r} is published", "/admin")
        return store.bundle_of(head)


def _draft_bundle(request: Request, key: str) -> Bundle:
    with request.app.state.factory() as session:
        draft = drafts.get_draft(session, key)
        if draft is None:
            raise Refused(
                409, "No draft", f"{key} has no draft: start one from the editor", _edit(key)
            )
        return store.bundle_of(draft)


def _edit(key: str, step: str | None = None) -> str:
    return f"{_base(key)}/edit" + (f"?step={step}" if step else "")


# ---------------------------------------------------------------- reading the form


async def _read_form(request: Request) -> dict[str, list[str]] | Refused:
    """The posted fields (every value text); a file upload or a malformed body is a 400.

    A dependency, so the routes that take it can be plain functions: FastAPI runs those
    in its thread pool, and rendering and linting a course (a second or more, longer for
    copy that loops) never holds up the event loop and every other request with it."""
    try:
        form = await request.form()
    except Exception:  # a body the form parser refuses
        return Refused(400, "Malformed form", "the form could not be read", "/admin")
    out: dict[str, list[str]] = {}
    for name, value in form.multi_items():
        if not isinstance(value, str):
            return Refused(400, "Malformed form", f"{name}: not a text field", "/admin")
        out.setdefault(name, []).append(value)
    return out


Posted = Annotated[dict[str, list[str]] | Refused, Depends(_read_form)]


def _form(posted: dict[str, list[str]] | Refused) -> dict[str, list[str]]:
    if isinstance(posted, Refused):
        raise posted
    return posted


def _one(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name) or [""]
    return values[-1]


def _step_edit(form: dict[str, list[str]], current: StepEdit) -> StepEdit:
    """The typed values; a field the form leaves out keeps the draft's."""
    edit = StepEdit(
        delay=_one(form, "delay") if "delay" in form else current.delay,
        channels=[c for c in form.get("channels", []) if c],
        fallback=_one(form, "fallback"),
        branch={
            name: _one(form, name) if name in form else current.branch.get(name, "")
            for name in BRANCH_FIELDS
        },
    )
    for name, values in form.items():
        part, _, rest = name.partition(".")
        if part in ("subject", "preheader") and rest:
            getattr(edit, part)[rest] = values[-1].replace("\r\n", "\n")
        elif part == "body" and rest:
            edit.bodies[rest] = values[-1].replace("\r\n", "\n")
        elif name not in (CSRF_FIELD, "delay", "channels", "fallback", *BRANCH_FIELDS):
            raise EditError({"general": f"unknown field {name!r}"})
    return edit


# ---------------------------------------------------------------- the editor


def _campaign(bundle: Bundle, shared: FilePath):
    try:
        return parse_bundle(bundle, shared)
    except DefinitionError as exc:
        raise Refused(
            409, "The files do not read", "; ".join(exc.problems), "/admin/sequences"
        ) from None


def _editor(
    request: Request,
    staff: Staff,
    key: str,
    step_key: str | None,
    *,
    status: int = 200,
    typed: StepEdit | None = None,
    errors: dict[str, str] | None = None,
    window: WindowEdit | None = None,
    done: str | None = None,
    new: NewStep | None = None,
) -> HTMLResponse:
    state = request.app.state
    shared = _shared(request)
    read_only = _files_mode(request)
    running = _running_bundle(request, key)
    draft_state = None
    if not read_only:
        with state.factory() as session:
            draft_state = drafts.draft_state(session, key)
    draft = draft_state.draft if draft_state else None
    bundle = store.bundle_of(draft) if draft is not None else running
    campaign = _campaign(bundle, shared)
    step = campaign.step(step_key) if step_key else campaign.steps[0]
    if step is None:
        raise Refused(404, "No such step", f"{key} has no step {step_key!r}", _edit(key))
    ctx = _lint_context(request)
    findings = check_step(bundle, step.key, ctx, shared)
    by_field = findings_by_field(findings, step.key, step.template)
    try:
        previews = preview_step(
            bundle, step.key, shared, sender_from(state.settings), ctx.base_url, state.signer
        )
    except (DefinitionError, LookupError) as exc:
        previews, by_field["general"] = [], [*by_field.get("general", []), str(exc)]
    fields = typed or step_fields(bundle, campaign, step.key)
    reviews = step_reviews(bundle, shared, ctx.today)
    return _page(
        "admin_sequence_edit.html",
        staff,
        status,
        title=f"Edit {campaign.name}",
        key=key,
        campaign=campaign,
        step=step,
        fields=fields,
        errors=errors or {},
        findings=by_field,
        previews=previews,
        reviews=reviews,
        window=window or _window_of(campaign),
        days=DAYS,
        state=draft_state,
        read_only=read_only,
        editing=draft is not None,
        sent=sent_names(campaign, step),
        kind_of=kind_of,
        kinds=BODY_KINDS,
        shares=_sharing(campaign, step),
        delay_text=format_delay,
        done=done,
        new=new or NewStep("", step.key, "2d", ["email"], "", {}, {}),
        templates=sorted({s.template for s in campaign.steps}),
        base=_base(key),
    )


def _window_of(campaign) -> WindowEdit:
    w = campaign.window
    end = w.end.strftime("%H:%M")
    return WindowEdit(
        [DAYS[d] for d in sorted(w.days)],
        w.start.strftime("%H:%M"),
        "24:00" if end == "00:00" else end,
    )


def _sharing(campaign, step) -> list[str]:
    """Other steps that send from the same template files (an edit changes theirs too)."""
    return [s.key for s in campaign.steps if s.template == step.template and s.key != step.key]


@router.get("/sequences", response_class=HTMLResponse)
def sequences_page(request: Request, staff: Campaigns) -> HTMLResponse:
    state = request.app.state
    rows = []
    if not _files_mode(request):
        with state.factory() as session:
            for key, number in sorted(store.heads(session).items()):
                rows.append((key, number, drafts.draft_state(session, key)))
    else:
        rows = [(key, None, None) for key in sorted(state.registry.campaigns())]
    return _page(
        "admin_sequences.html",
        staff,
        title="Sequences",
        rows=rows,
        read_only=_files_mode(request),
    )


@router.get("/campaigns/{key}/edit", response_class=HTMLResponse)
def edit_page(
    request: Request, key: str, staff: Campaigns, step: str | None = None, saved: str = ""
):
    done = "Saved: the checks and the preview below are the draft's." if saved else None
    try:
        return _editor(request, staff, key, step, done=done)
    except Refused as refused:
        return _notice(staff, refused)


def _writable(request: Request, key: str) -> None:
    if _files_mode(request):
        raise Refused(
            409,
            "Edited in the files",
            "This deployment runs its sequences from the files (SEQUENCES_SOURCE=files): "
            "edit the campaign's YAML and templates, and commit them.",
            _edit(key),
        )


@router.post("/campaigns/{key}/edit/start", response_class=HTMLResponse)
def start_draft(request: Request, key: str, staff: Campaigns, posted: Posted):
    state = request.app.state
    try:
        _writable(request, key)
        form = _form(posted)
        with transaction(state.factory) as session:
            if _one(form, "restart") == "1":
                drafts.restart_draft(session, state.clock, staff.actor, key)
            else:
                drafts.open_draft(session, state.clock, staff.actor, key)
    except drafts.DraftError as exc:
        return _notice(staff, Refused(404, "No such campaign", str(exc), "/admin/sequences"))
    except Refused as refused:
        return _notice(staff, refused)
    return RedirectResponse(_edit(key), status_code=303)


@router.post("/campaigns/{key}/edit/discard", response_class=HTMLResponse)
def discard(request: Request, key: str, staff: Campaigns):
    state = request.app.state
    try:
        _writable(request, key)
    except Refused as refused:
        return _notice(staff, refused)
    with transaction(state.factory) as session:
        drafts.discard_draft(session, state.clock, staff.actor, key)
    return RedirectResponse(_edit(key), status_code=303)


def _edited(request: Request, key: str, step_key: str, form) -> tuple[Bundle, StepEdit]:
    """The draft with this form's fields applied (not saved); EditError with the typed
    values kept on it (`typed`)."""
    shared = _shared(request)
    bundle = _draft_bundle(request, key)
    campaign = _campaign(bundle, shared)
    if campaign.step(step_key) is None:
        raise Refused(404, "No such step", f"{key} has no step {step_key!r}", _edit(key))
    current = step_fields(bundle, campaign, step_key)
    try:
        typed = _step_edit(form, current)
    except EditError as exc:
        exc.typed = current
        raise
    try:
        return apply_step_edit(bundle, step_key, typed, shared), typed
    except EditError as exc:
        exc.typed = typed
        raise


def _new_step(form: dict[str, list[str]]) -> NewStep:
    new = NewStep(
        key=_one(form, "key").strip(),
        after=_one(form, "after"),
        delay=_one(form, "delay"),
        channels=[c for c in form.get("channels", []) if c],
        template=(_one(form, "new_template") or _one(form, "template")).strip(),
    )
    for name, values in form.items():
        part, _, rest = name.partition(".")
        if part in ("subject", "preheader") and rest:
            getattr(new, part)[rest] = values[-1]
        elif name not in (
            CSRF_FIELD,
            "key",
            "after",
            "delay",
            "channels",
            "template",
            "new_template",
        ):
            raise EditError({"general": f"unknown field {name!r}"})
    return new


def _save_order(request, staff, key, edited: Bundle, what: dict, step_key: str | None):
    """The draft with a step added, removed or moved, audited in the same transaction."""
    state = request.app.state
    try:
        with transaction(state.factory) as session:
            drafts.save_draft(session, state.clock, staff.actor, key, edited, what)
    except drafts.DraftError as exc:
        return _notice(staff, Refused(409, "Not saved", str(exc), _edit(key)))
    return RedirectResponse(
        _edit(key, step_key) + ("&" if step_key else "?") + "saved=1#editor", status_code=303
    )


@router.post("/campaigns/{key}/edit/steps/add", response_class=HTMLResponse)
def add(request: Request, key: str, staff: Campaigns, posted: Posted):
    new = NewStep("", "", "", [], "")
    try:
        _writable(request, key)
        form = _form(posted)
        bundle = _draft_bundle(request, key)
        try:
            new = _new_step(form)
            edited = add_step(bundle, new, _shared(request))
        except EditError as exc:
            after = new.after if new.after and "after" not in exc.fields else None
            errors = {f"new.{name}": message for name, message in exc.fields.items()}
            return _editor(request, staff, key, after, status=400, errors=errors, new=new)
    except Refused as refused:
        return _notice(staff, refused)
    what = {"step": new.key, "change": "added", "after": new.after or None}
    what |= {"template": new.template, "channels": new.channels}
    return _save_order(request, staff, key, edited, what, new.key)


def _draft_with(request: Request, key: str, step_key: str) -> Bundle:
    """The draft, which has this step (else a 404)."""
    bundle = _draft_bundle(request, key)
    if _campaign(bundle, _shared(request)).step(step_key) is None:
        raise Refused(404, "No such step", f"{key} has no step {step_key!r}", _edit(key))
    return bundle


def _removed(request: Request, key: str, step_key: str) -> tuple[Bundle, Bundle]:
    bundle = _draft_with(request, key, step_key)
    try:
        return bundle, remove_step(bundle, step_key, _shared(request))
    except EditError as exc:
        raise Refused(
            409,
            f"Step {step_key} is not removed",
            " ".join(exc.fields.values()),
            _edit(key, step_key),
        ) from None


@router.get("/campaigns/{key}/edit/steps/{step_key}/remove", response_class=HTMLResponse)
def remove_page(request: Request, key: str, step_key: str, staff: Campaigns):
    try:
        _writable(request, key)
        draft, edited = _removed(request, key, step_key)
        found, words, diffs = _impact_view(request, key, draft, edited)
    except Refused as refused:
        return _notice(staff, refused)
    return _page(
        "admin_sequence_remove.html",
        staff,
        title=f"Remove step {step_key}",
        key=key,
        step_key=step_key,
        impact=found,
        words=words,
        diffs=diffs,
        base=_base(key),
    )


@router.post("/campaigns/{key}/edit/steps/{step_key}/remove", response_class=HTMLResponse)
def remove(request: Request, key: str, step_key: str, staff: Campaigns, posted: Posted):
    try:
        _writable(request, key)
        _form(posted)
        _, edited = _removed(request, key, step_key)
    except Refused as refused:
        return _notice(staff, refused)
    return _save_order(request, staff, key, edited, {"step": step_key, "change": "removed"}, None)


@router.post("/campaigns/{key}/edit/steps/{step_key}/move", response_class=HTMLResponse)
def move(request: Request, key: str, step_key: str, staff: Campaigns, posted: Posted):
    try:
        _writable(request, key)
        form = _form(posted)
        bundle = _draft_with(request, key, step_key)
        direction = _one(form, "direction")
        try:
            edited = move_step(bundle, step_key, direction, _shared(request))
        except EditError as exc:
            return _editor(request, staff, key, step_key, status=400, errors=exc.fields)
    except Refused as refused:
        return _notice(staff, refused)
    what = {"step": step_key, "change": f"moved {direction}"}
    return _save_order(request, staff, key, edited, what, step_key)


@router.post("/campaigns/{key}/edit/steps/{step_key}", response_class=HTMLResponse)
def save_step(request: Request, key: str, step_key: str, staff: Campaigns, posted: Posted):
    state = request.app.state
    try:
        _writable(request, key)
        form = _form(posted)
        try:
            bundle, typed = _edited(request, key, step_key, form)
        except EditError as exc:
            return _editor(
                request, staff, key, step_key, status=400, typed=exc.typed, errors=exc.fields
            )
        with transaction(state.factory) as session:
            drafts.save_draft(
                session,
                state.clock,
                staff.actor,
                key,
                bundle,
                {"step": step_key, "fields": _changed_fields(form)},
            )
    except Refused as refused:
        return _notice(staff, refused)
    except drafts.DraftError as exc:
        return _notice(staff, Refused(409, "Not saved", str(exc), _edit(key)))
    return RedirectResponse(_edit(key, step_key) + "&saved=1#editor", status_code=303)


def _changed_fields(form) -> list[str]:
    return sorted({name.split(".")[0] for name in form if name != CSRF_FIELD})


@router.post("/campaigns/{key}/edit/steps/{step_key}/check")
def check_step_form(request: Request, key: str, step_key: str, staff: Campaigns, posted: Posted):
    """The lint and preview of the typed (unsaved) fields, as HTML parts for the page's
    script to put in place."""
    state = request.app.state
    parts = pages.get_template("admin_sequence_parts.html")
    try:
        _writable(request, key)
        form = _form(posted)
        try:
            bundle, _ = _edited(request, key, step_key, form)
        except EditError as exc:
            return JSONResponse({"errors": exc.fields}, status_code=400)
    except Refused as refused:
        return JSONResponse({"error": refused.message}, status_code=refused.status)
    shared = _shared(request)
    campaign = parse_bundle(bundle, shared)
    step = campaign.step(step_key)
    ctx = _lint_context(request)
    by_field = findings_by_field(check_step(bundle, step_key, ctx, shared), step_key, step.template)
    previews = preview_step(
        bundle, step_key, shared, sender_from(state.settings), ctx.base_url, state.signer
    )
    module = parts.make_module({})
    return JSONResponse(
        {
            "errors": {},
            "findings": {name: str(module.findings(found)) for name, found in by_field.items()},
            "preview": str(module.previews(previews)),
        }
    )


@router.post("/campaigns/{key}/edit/window", response_class=HTMLResponse)
def save_window(request: Request, key: str, staff: Campaigns, posted: Posted):
    state = request.app.state
    try:
        _writable(request, key)
        form = _form(posted)
        typed = WindowEdit(form.get("days", []), _one(form, "start"), _one(form, "end"))
        bundle = _draft_bundle(request, key)
        try:
            edited = apply_window_edit(bundle, typed, _shared(request))
        except EditError as exc:
            return _editor(
                request,
                staff,
                key,
                _one(form, "step") or None,
                status=400,
                errors=exc.fields,
                window=typed,
            )
        with transaction(state.factory) as session:
            drafts.save_draft(
                session, state.clock, staff.actor, key, edited, {"fields": ["window"]}
            )
    except Refused as refused:
        return _notice(staff, refused)
    except drafts.DraftError as exc:
        return _notice(staff, Refused(409, "Not saved", str(exc), _edit(key)))
    return RedirectResponse(_edit(key), status_code=303)


@router.post("/campaigns/{key}/edit/sign", response_class=HTMLResponse)
def sign(request: Request, key: str, staff: Campaigns, posted: Posted):
    state = request.app.state
    try:
        _writable(request, key)
        form = _form(posted)
        step_key = _one(form, "step")
        steps = [] if _one(form, "scope") == "all" else [step_key]
        try:
            with transaction(state.factory) as session:
                signed = drafts.sign_reviews(
                    session,
                    state.clock,
                    staff.actor,
                    key,
                    steps,
                    _one(form, "by"),
                    _shared(request),
                    state.clock.now().date(),
                    seen=_one(form, "seen") or None,
                )
        except ReviewError as exc:
            return _editor(
                request, staff, key, step_key or None, status=400, errors={"review": str(exc)}
            )
    except Refused as refused:
        return _notice(staff, refused)
    except drafts.DraftError as exc:
        return _notice(staff, Refused(409, "Not signed", str(exc), _edit(key)))
    log.info("%s: %d step(s) signed in the draft by %s", key, len(signed), staff.actor.by)
    return RedirectResponse(_edit(key, step_key or None) + "#review", status_code=303)


# ---------------------------------------------------------------- impact and publish


def _impact_view(request: Request, key: str, old: Bundle, new: Bundle):
    with request.app.state.factory() as session:
        try:
            found = impact(session, old, new, _shared(request))
        except DefinitionError as exc:
            raise Refused(
                409, "The files do not read", "; ".join(exc.problems), _edit(key)
            ) from None
    return found, [sentence(c) for c in found.changes], file_diffs(old, new)


@router.get("/campaigns/{key}/edit/publish", response_class=HTMLResponse)
def publish_page(request: Request, key: str, staff: Campaigns):
    try:
        _writable(request, key)
        return _publish_view(request, staff, key)
    except Refused as refused:
        return _notice(staff, refused)


def _publish_view(request, staff, key, status=200, refusal: list[str] | None = None):
    state = request.app.state
    running = _running_bundle(request, key)
    bundle = _draft_bundle(request, key)
    found, words, diffs = _impact_view(request, key, running, bundle)
    ctx = replace(_lint_context(request), strict=state.settings.publish_requires_review)
    with state.factory() as session:
        draft_state = drafts.draft_state(session, key)
        known = set(store.heads(session))
    check = check_bundle(bundle, ctx, _shared(request), known)
    return _page(
        "admin_sequence_publish.html",
        staff,
        status,
        title=f"Publish {key}",
        key=key,
        impact=found,
        words=words,
        diffs=diffs,
        check=check,
        state=draft_state,
        refusal=refusal or [],
        requires_review=state.settings.publish_requires_review,
        base=_base(key),
    )


def _refresh(request: Request) -> None:
    """This process runs the new revision at once (the others within their refresh)."""
    refresh = getattr(request.app.state.registry, "refresh", None)
    if refresh is not None:
        refresh()


@router.post("/campaigns/{key}/edit/publish", response_class=HTMLResponse)
def publish(request: Request, key: str, staff: Campaigns, posted: Posted):
    state = request.app.state
    try:
        _writable(request, key)
        form = _form(posted)
        note = _one(form, "note").strip()[:500] or None
        try:
            with transaction(state.factory) as session:
                done = drafts.publish_draft(
                    session,
                    state.clock,
                    staff.actor,
                    key,
                    _lint_context(request),
                    _shared(request),
                    require_review=state.settings.publish_requires_review,
                    note=note,
                    seen=_one(form, "seen") or None,
                )
        except PublishError as exc:
            return _publish_view(request, staff, key, status=409, refusal=exc.problems)
    except Refused as refused:
        return _notice(staff, refused)
    except drafts.DraftError as exc:
        return _notice(staff, Refused(409, "Not published", str(exc), _edit(key)))
    _refresh(request)
    message = (
        f"The draft equals revision {done.number}, which runs: nothing was published."
        if done.unchanged
        else f"Revision {done.number} of {key} is published and runs from now on."
    )
    return admin_page(
        "admin_notice.html",
        staff,
        200,
        title="Published",
        message=message,
        detail="Other processes pick it up within a few seconds.",
        back=f"{_base(key)}/history",
    )


# ---------------------------------------------------------------- history and rollback


@router.get("/campaigns/{key}/history", response_class=HTMLResponse)
def history_page(request: Request, key: str, staff: Campaigns):
    state = request.app.state
    with state.factory() as session:
        rows = revision_rows(session, key)
    if not rows:
        return _notice(
            staff, Refused(404, "No such campaign", f"{key!r} has no revisions", "/admin/sequences")
        )
    return _page(
        "admin_sequence_history.html",
        staff,
        title=f"History of {key}",
        key=key,
        rows=rows,
        read_only=_files_mode(request),
        base=_base(key),
    )


def _revision_bundle(request: Request, key: str, number: int) -> Bundle:
    with request.app.state.factory() as session:
        row = store.revision(session, key, number)
        if row is None:
            raise Refused(
                404, "No such revision", f"{key} has no revision {number}", f"{_base(key)}/history"
            )
        return store.bundle_of(row)


@router.get("/campaigns/{key}/history/{number}/rollback", response_class=HTMLResponse)
def rollback_page(request: Request, key: str, number: Number, staff: Campaigns):
    try:
        _writable(request, key)
        return _rollback_view(request, staff, key, number)
    except Refused as refused:
        return _notice(staff, refused)


def _rollback_view(request, staff, key, number, status=200, refusal=None):
    running = _running_bundle(request, key)
    old = _revision_bundle(request, key, number)
    found, words, diffs = _impact_view(request, key, running, old)
    with request.app.state.factory() as session:
        head = store.head(session, key)
    return _page(
        "admin_sequence_rollback.html",
        staff,
        status,
        title=f"Roll {key} back to revision {number}",
        key=key,
        number=number,
        running=head.number if head else None,
        impact=found,
        words=words,
        diffs=diffs,
        refusal=refusal or [],
        base=_base(key),
    )


@router.post("/campaigns/{key}/history/{number}/rollback", response_class=HTMLResponse)
def rollback(request: Request, key: str, number: Number, staff: Campaigns):
    state = request.app.state
    try:
        _writable(request, key)
        try:
            with transaction(state.factory) as session:
                done = drafts.rollback_checked(
                    session,
                    state.clock,
                    staff.actor,
                    key,
                    number,
                    _lint_context(request),
                    _shared(request),
                    require_review=state.settings.publish_requires_review,
                )
        except PublishError as exc:
            return _rollback_view(request, staff, key, number, status=409, refusal=exc.problems)
    except Refused as refused:
        return _notice(staff, refused)
    except drafts.DraftError as exc:
        return _notice(staff, Refused(404, "Not rolled back", str(exc), "/admin/sequences"))
    _refresh(request)
    return admin_page(
        "admin_notice.html",
        staff,
        200,
        title="Rolled back",
        message=f"Revision {number}'s files run again, as revision {done.number} of {key}.",
        detail="An open draft began before this: publishing it is refused until restarted.",
        back=f"{_base(key)}/history",
    )


@router.get("/static/editor.js")
def editor_script(_staff: Campaigns) -> Response:
    return Response(
        SCRIPT.read_text(encoding="utf-8"),
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )
