"""The HTML of ``report.html``: one static page, inline CSS, the loss plot as a data URI, no script.

Everything taken from the run (prompts, model outputs, ids, paths, messages) is untrusted text: it is
redacted (:mod:`tunix_rt.redact`), then HTML-escaped, and only an ``https://`` Kaggle URL becomes a link.
The page asks for nothing over the network (the favicon is an empty data URI, so a browser does not
fetch ``/favicon.ico`` either). Data are read by :mod:`tunix_rt.run_report`.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from tunix_rt.training import contract

from . import __version__
from .redact import Redactor

if TYPE_CHECKING:
    from .run_report import ReportData

PROMPT_EXCERPT = 160  # characters of a prompt shown in the item table (the full prompt is its tooltip)
OUTPUT_EXCERPT = 400  # characters of a raw model output shown under "output"
TOOLTIP_MAX = 1000
PHASES = ("import", "data", "model_init", "compile", "train", "checkpoint", "generate", "score")
VERSION_KEYS = ("python", "jax", "jaxlib", "flax", "optax", "tunix", "transformers", "qwix")

CSS = """
:root{--fg:#1f2328;--muted:#57606a;--line:#d0d7de;--bg:#f6f8fa;--ok:#1a7f37;--bad:#cf222e;--accent:#1f6feb}
*{box-sizing:border-box}
body{margin:0;font:14px/1.45 -apple-system,"Segoe UI",Helvetica,Arial,sans-serif;color:var(--fg);background:#fff}
main{max-width:1100px;margin:0 auto;padding:24px 28px 40px}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 10px;padding-bottom:4px;border-bottom:1px solid var(--line)}
.sub{color:var(--muted);margin:0}
.badge{display:inline-block;padding:1px 10px;border-radius:12px;font-size:13px;font-weight:600;
  vertical-align:middle;margin-left:8px;color:#fff}
.badge.complete{background:var(--ok)}.badge.failed{background:var(--bad)}.badge.cut_for_time{background:#b58900}
.failure{border:1px solid var(--bad);background:#ffebe9;padding:8px 12px;border-radius:6px;margin-top:12px}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:180px;background:var(--bg)}
.card .v{font-size:26px;font-weight:600}.card .k{color:var(--muted);font-size:12px;text-transform:uppercase}
figure{margin:0}.plot{display:inline-block;max-width:100%;border:1px solid var(--line);border-radius:6px;
  overflow:hidden}.plot img{display:block;max-width:100%;height:auto}
figcaption{color:var(--muted);font-size:12px;margin-top:4px}
table{border-collapse:collapse;width:100%}
th,td{border-bottom:1px solid var(--line);padding:5px 8px;text-align:left;vertical-align:top}
th{background:var(--bg);font-weight:600}
table.kv th{width:230px;background:none;color:var(--muted);font-weight:500}
td.num,th.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
code,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px;word-break:break-all}
td.id{white-space:nowrap;word-break:normal}table.narrow{width:auto;min-width:480px}
tr.ok td.res{color:var(--ok);font-weight:600}tr.bad td.res{color:var(--bad);font-weight:600}
td.prompt{max-width:380px}.none{color:var(--muted);font-style:italic}
details summary{cursor:pointer;color:var(--muted);font-size:12px}
details pre{white-space:pre-wrap;word-break:break-word;background:var(--bg);padding:6px;margin:4px 0 0;
  font-size:12px;max-width:420px}
.bar{height:10px;background:var(--accent);border-radius:2px;min-width:1px}
.notes{color:var(--muted);font-size:13px}
footer{margin-top:32px;color:var(--muted);font-size:12px}
""".strip()


class _Text:
    """Redact, then escape: every value from the run passes through here."""

    def __init__(self) -> None:
        self._redact = Redactor().redact

    def __call__(self, value: Any, default: str = "n/a") -> str:
        if value is None:
            return f'<span class="none">{default}</span>'
        return html.escape(self._redact(str(value)), quote=True)

    def attr(self, value: Any, limit: int = TOOLTIP_MAX) -> str:
        text = " ".join(self._redact(str(value)).split())
        return html.escape(text[:limit] + ("…" if len(text) > limit else ""), quote=True)


def _fmt(value: Any, spec: str) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return format(value, spec)


def _excerpt(text: Any, limit: int) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _kv(rows: Iterable[tuple[str, str]]) -> str:
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="kv">{body}</table>'


def _header(data: ReportData, t: _Text) -> str:
    m = data.manifest
    status = m.get("status") if m.get("status") in contract.RUN_STATUSES else "failed"
    env = _dict(m.get("environment"))
    parts = [f"<code>{t(m.get('model_id'))}</code>", f"{t(m.get('mode'))} run",
             f"platform {t(env.get('platform'))}", f"finished {t(m.get('timestamp'))} (UTC)"]
    out = [f'<h1>Run report: {t(m.get("run_version") or data.run_dir.name)}'
           f'<span class="badge {status}">{t(m.get("status"))}</span></h1>',
           f'<p class="sub">{" · ".join(parts)}</p>']
    if m.get("failure_message"):
        out.append(f'<div class="failure"><strong>Failure:</strong> {t(m["failure_message"])}</div>')
    return "\n".join(out)


def _scores(data: ReportData, t: _Text) -> str:
    s = data.summary
    metrics = _dict(s.get("metrics"))
    n = s.get("n_items")
    training = _dict(data.manifest.get("training"))

    def card(key: str, value: Any, spec: str, detail: str) -> str:
        shown = t(_fmt(value, spec), "n/a")
        return f'<div class="card"><div class="k">{key}</div><div class="v">{shown}</div><div>{detail}</div></div>'

    cards = [
        card("answer correctness", s.get("primary_score", metrics.get("answer_correctness")), ".1%",
             f"{t(metrics.get('n_correct'))} of {t(n)} correct"),
        card("format compliance", metrics.get("format_compliance"), ".1%",
             f"{t(metrics.get('n_well_formed'))} of {t(n)} well formed"),
        card("eval set", n, "d", f"items in <code>{t(s.get('eval_set'))}</code>"),
        card("final loss", training.get("final_loss"), ".4f",
             f"from {t(_fmt(training.get('first_loss'), '.4f'))} over {t(training.get('steps'))} steps"),
    ]
    out = [f'<div class="cards">{"".join(cards)}</div>']
    by_cat = _dict(metrics.get("by_category") or _dict(data.eval_results).get("by_category"))
    if by_cat:
        rows = "".join(
            f"<tr><td>{t(name)}</td><td class='num'>{t(_dict(c).get('n'))}</td>"
            f"<td class='num'>{t(_dict(c).get('correct'))}</td><td class='num'>{t(_dict(c).get('well_formed'))}"
            f"</td></tr>" for name, c in sorted(by_cat.items()))
        out.append('<h3>By category</h3><table class="narrow"><thead><tr><th>category</th><th class="num">items</th>'
                   f'<th class="num">correct</th><th class="num">well formed</th></tr></thead><tbody>{rows}'
                   '</tbody></table>')
    out.append(f'<p class="notes">eval set sha256 <code>{t(s.get("eval_set_sha256"))}</code>; '
               f'{t(s.get("n_predictions"))} predictions scored.</p>')
    return "\n".join(out)


def _plot(data: ReportData, png: bytes, png_name: str, size: tuple[int, int], t: _Text) -> str:
    train, evals = data.train_points, data.eval_points
    uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
    if train:
        caption = (f"{len(train)} logged steps, loss {train[0][1]:.4f} at step {train[0][0]} → "
                   f"{train[-1][1]:.4f} at step {train[-1][0]}")
        if evals:
            caption += f"; eval loss at {len(evals)} step(s), last {evals[-1][1]:.4f}"
    else:
        caption = "no loss values: outputs/output/metrics.jsonl is not in this run directory"
    alt = "training loss over steps" if train else "no loss curve"
    return (f'<figure><div class="plot"><img id="loss-plot" src="{uri}" width="{size[0]}" height="{size[1]}" '
            f'alt="{alt}"></div><figcaption>{t(caption)} (also <code>{t(png_name)}</code>).</figcaption></figure>')


def _items(data: ReportData, t: _Text) -> str:
    if data.items is None:
        return '<p class="none">No per-item table: outputs/output/predictions.jsonl is not in this run directory.</p>'
    rows = []
    for i, item in enumerate(data.items, 1):
        correct = item.get("correct") is True
        predicted = item.get("parsed_answer")
        raw = item.get("raw_output")
        output = (f"<details><summary>output</summary><pre>{t(_excerpt(raw, OUTPUT_EXCERPT))}</pre></details>"
                  if raw else "")
        well = {True: "yes", False: "no"}.get(item.get("well_formed"), "?")
        rows.append(
            f'<tr class="{"ok" if correct else "bad"}"><td class="num">{i}</td><td class="mono id">{t(item.get("id"))}'
            f'</td><td>{t(item.get("category"), "-")}</td>'
            f'<td class="prompt" title="{t.attr(item.get("prompt", ""))}">'
            f'{t(_excerpt(item.get("prompt", ""), PROMPT_EXCERPT))}</td>'
            f'<td class="mono">{t(item.get("expected_answer"))}</td>'
            f'<td class="mono">{t(predicted, "no answer")}{output}</td><td>{well}</td>'
            f'<td class="res">{"✓ correct" if correct else "✗ wrong"}</td></tr>')
    head = ('<tr><th class="num">#</th><th>id</th><th>category</th><th>prompt (excerpt)</th><th>expected</th>'
            '<th>predicted</th><th>format</th><th>result</th></tr>')
    n = data.summary.get("n_items")
    note = (f'<p class="notes">{len(data.items)} predictions for an eval set of {t(n)} items.</p>'
            if isinstance(n, int) and n != len(data.items) else "")
    return f'{note}<table id="eval-items"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


def _environment(data: ReportData, t: _Text) -> str:
    m = data.manifest
    env = _dict(m.get("environment"))
    model = _dict(m.get("model"))
    training = _dict(m.get("training"))
    versions = _dict(_dict(data.run_result).get("versions")) or {
        "python": env.get("python_version"), "jax": env.get("jax_version"), "tunix": env.get("tunix_version")}
    kinds = env.get("device_kinds")
    rows = [
        ("runner platform", t(env.get("platform"))),
        ("accelerator requested", t(env.get("requested_accelerator"))),
        ("accelerator JAX used", f"{t(env.get('accelerator'))} × {t(env.get('devices'))} device(s)"
                                 + (f" ({t(', '.join(map(str, kinds)))})" if isinstance(kinds, list) else "")),
        ("Kaggle run type", t(env.get("kaggle_kernel_run_type"))),
        ("versions", ", ".join(f"{t(k)} {t(versions.get(k))}" for k in VERSION_KEYS if versions.get(k))
         or t(None)),
        ("model", f"<code>{t(m.get('model_id'))}</code> ({t(model.get('source'))}, {t(model.get('finetune'))} "
                  f"fine-tune, {t(_fmt(model.get('param_count'), ','))} parameters, {t(model.get('dtype'))})"),
        ("dataset", f"{t(m.get('dataset'))} ({t(m.get('n_traces'))} traces)"),
        ("config", f"<code>{t(m.get('config_path'))}</code>"),
        ("training", f"{t(training.get('steps'))} of {t(training.get('max_steps'))} steps, batch "
                     f"{t(training.get('batch_size'))} × {t(training.get('seq_len'))} tokens, "
                     f"{t(_fmt(training.get('tokens_trained'), ','))} tokens trained, "
                     f"{t(_fmt(training.get('tokens_per_second'), ',.0f'))} tokens/s"),
    ]
    return _kv(rows)


def _timings(data: ReportData, t: _Text) -> str:
    timings = _dict(data.manifest.get("timings_s"))
    total = timings.get("total")
    if not timings:
        return '<p class="none">No timings recorded.</p>'
    rows = []
    names = [p for p in PHASES if p in timings] + sorted(k for k in timings if k not in PHASES and k != "total")
    for name in names:
        value = timings.get(name)
        ok = isinstance(value, (int, float)) and isinstance(total, (int, float)) and total > 0
        bar = f'<div class="bar" style="width:{min(value / total, 1.0) * 100:.1f}%"></div>' if ok else ""
        rows.append(f"<tr><td>{t(name)}</td><td class='num'>{t(_fmt(value, '.3f'), '-')}</td>"
                    f"<td style='width:60%'>{bar}</td></tr>")
    rows.append(f"<tr><th>total</th><th class='num'>{t(_fmt(total, '.3f'))}</th><th></th></tr>")
    return f'<table><thead><tr><th>phase</th><th class="num">seconds</th><th></th></tr></thead>{"".join(rows)}</table>'


def _provenance(data: ReportData, t: _Text) -> str:
    m = data.manifest
    kaggle = _dict(m.get("kaggle"))
    rows = []
    if kaggle:
        url = kaggle.get("url")
        link = (f'<a href="{t(url)}">{t(url)}</a>' if isinstance(url, str) and url.startswith("https://")
                else t(url))
        rows += [
            ("Kaggle kernel", f"<code>{t(kaggle.get('kernel_ref'))}</code> version {t(kaggle.get('version_number'))}"),
            ("Kaggle URL", link),
            ("Kaggle machine", f"{t(kaggle.get('machine_shape'))} ({t(kaggle.get('accelerator'))}), status "
                               f"{t(kaggle.get('status'))}"),
            ("pushed / finished", f"{t(kaggle.get('pushed_at'))} / {t(kaggle.get('finished_at'))}"),
        ]
    else:
        rows.append(("Kaggle kernel", '<span class="none">none: a local rehearsal</span>'))
    dirty = " (working tree had uncommitted changes)" if m.get("commit_dirty") else ""
    rows += [
        ("bundle sha256", f"<code>{t(m.get('bundle_sha256'))}</code>"),
        ("commit", f"<code>{t(m.get('commit_sha'))}</code>{dirty}"),
        ("command", f"<code>{t(m.get('command'))}</code>"),
    ]
    return _kv(rows)


def render_html(data: ReportData, png: bytes, *, png_name: str = "loss.png",
                png_size: tuple[int, int] = (1000, 360)) -> str:
    """The whole page (deterministic for the same data)."""
    t = _Text()
    title = t(data.manifest.get("run_version") or data.run_dir.name)
    notes = "".join(f"<li>{t(n)}</li>" for n in data.notes)
    sources = ", ".join(f"<code>{name}</code>" for name in ("run_manifest.json", "eval_summary.json"))
    body = "\n".join([
        _header(data, t),
        '<section id="scores"><h2>Scores</h2>', _scores(data, t), "</section>",
        '<section id="loss"><h2>Loss curve</h2>', _plot(data, png, png_name, png_size, t), "</section>",
        '<section id="items"><h2>Eval items</h2>', _items(data, t), "</section>",
        '<section id="environment"><h2>Environment</h2>', _environment(data, t), "</section>",
        '<section id="timings"><h2>Timings by phase</h2>', _timings(data, t), "</section>",
        '<section id="provenance"><h2>Kaggle kernel and provenance</h2>', _provenance(data, t), "</section>",
        f'<section id="notes"><h2>Notes</h2><ul class="notes">{notes}</ul></section>' if notes else "",
        f"<footer>Written by tunix-rt {html.escape(__version__)} (<code>tunix-rt report</code>) from {sources} "
        "and the kernel's outputs/output/ files; every value comes from the run. A static page: no script, "
        "nothing fetched.</footer>",
    ])
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
        f"<title>tunix-rt run report: {title}</title>\n<link rel=\"icon\" href=\"data:,\">\n"
        f"<style>\n{CSS}\n</style>\n</head>\n<body>\n<main>\n{body}\n</main>\n</body>\n</html>\n"
    )
