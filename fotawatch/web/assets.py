"""The status page's stylesheet and script, served from ``/assets/`` (no build step).

Colours are data: ``KIND_COLOURS`` and ``TEXT_COLOURS`` are (foreground, background) pairs that
``tests/test_web.py`` holds to WCAG AA (4.5:1). Colour is never the only signal: each status
badge carries the status and its kind as text.

The script is an enhancement only (the page works without it): it refreshes ``#live`` in place
every ``data-refresh`` seconds from the page's own URL (which carries the filter, so a refresh
keeps it), applies the filter without a reload, and says so when a refresh fails. Without
JavaScript a ``<noscript>`` meta refresh reloads the same URL. Both are served as files, not
inline, so a ``Content-Security-Policy`` of ``script-src 'self'`` allows them.
"""

from __future__ import annotations

__all__ = ["ASSETS", "KIND_COLOURS", "TEXT_COLOURS"]

# kind -> (text, background) of its status badge
KIND_COLOURS: dict[str, tuple[str, str]] = {
    "in_progress": ("#ffffff", "#1d4ed8"),
    "succeeded": ("#ffffff", "#15803d"),
    "failed": ("#ffffff", "#b91c1c"),
    "cancelled": ("#ffffff", "#4b5563"),
    "aborted": ("#ffffff", "#9a3412"),
    "unknown": ("#ffffff", "#6d28d9"),
    "not_seen": ("#1f2937", "#e5e7eb"),
}
PAGE_BACKGROUND = "#ffffff"
STRIPE_BACKGROUND = "#f3f4f6"
# role -> (text, background): body text, muted text, links, health words, the stale warning
TEXT_COLOURS: dict[str, tuple[str, str]] = {
    "body": ("#111827", PAGE_BACKGROUND),
    "body-striped": ("#111827", STRIPE_BACKGROUND),
    "muted": ("#4b5563", PAGE_BACKGROUND),
    "muted-striped": ("#4b5563", STRIPE_BACKGROUND),
    "link": ("#1d4ed8", PAGE_BACKGROUND),
    "link-striped": ("#1d4ed8", STRIPE_BACKGROUND),
    "health-ok": ("#166534", PAGE_BACKGROUND),
    "health-bad": ("#b91c1c", PAGE_BACKGROUND),
    "health-bad-striped": ("#b91c1c", STRIPE_BACKGROUND),
    "stale": ("#7c2d12", "#ffedd5"),
    "table-head": ("#111827", "#e5e7eb"),
}
BAR_UPGRADED, BAR_FAILED, BAR_REST, BAR_BORDER = "#15803d", "#b91c1c", "#e5e7eb", "#4b5563"


def _badges() -> str:
    return "\n".join(
        f".k-{kind} {{ color: {fg}; background: {bg}; }}" for kind, (fg, bg) in KIND_COLOURS.items()
    )


CSS = f"""\
:root {{ color: {TEXT_COLOURS["body"][0]}; background: {PAGE_BACKGROUND};
  font: 15px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }}
body {{ margin: 0 auto; padding: 0 1rem 2rem; max-width: 110rem; }}
header {{ display: flex; flex-wrap: wrap; align-items: baseline; gap: .25rem 1.5rem;
  border-bottom: 1px solid #d1d5db; margin-bottom: 1rem; }}
header h1 {{ font-size: 1.4rem; margin: .6rem 0; }}
header p, header nav {{ margin: 0; color: {TEXT_COLOURS["muted"][0]}; }}
nav a {{ margin-right: .75rem; }}
a {{ color: {TEXT_COLOURS["link"][0]}; }}
a:focus-visible, select:focus-visible, button:focus-visible {{
  outline: 3px solid #1d4ed8; outline-offset: 2px; }}
h2 {{ font-size: 1.25rem; margin: .5rem 0; overflow-wrap: anywhere; }}
h3 {{ font-size: 1.05rem; margin: 1.5rem 0 .5rem; }}
form.filter {{ display: flex; gap: .5rem; align-items: center; margin: 0 0 .75rem; }}
form.filter label {{ font-weight: 600; }}
select, button {{ font: inherit; padding: .2rem .5rem; }}
.scroll {{ overflow-x: auto; }}
table {{ border-collapse: collapse; width: 100%; }}
caption {{ text-align: left; font-weight: 600; padding: .25rem 0; }}
th, td {{ text-align: left; vertical-align: top; padding: .4rem .6rem;
  border-bottom: 1px solid #d1d5db; }}
thead th {{ color: {TEXT_COLOURS["table-head"][0]}; background: {TEXT_COLOURS["table-head"][1]};
  position: sticky; top: 0; white-space: nowrap; }}
tbody tr:nth-child(even) {{ background: {STRIPE_BACKGROUND}; }}
tbody th {{ font-weight: 600; overflow-wrap: anywhere; min-width: 12rem; }}
.id, .age, .kind, .note {{ color: {TEXT_COLOURS["muted"][0]}; font-size: .85rem;
  font-weight: 400; }}
.id {{ font-family: ui-monospace, "DejaVu Sans Mono", monospace; }}
.badge {{ display: inline-block; border-radius: .25rem; padding: .05rem .4rem;
  font-weight: 600; font-size: .85rem; white-space: nowrap; }}
.nowrap {{ white-space: nowrap; }}
{_badges()}
.h-ok {{ color: {TEXT_COLOURS["health-ok"][0]}; }}
.h-failing, .h-missing {{ color: {TEXT_COLOURS["health-bad"][0]}; font-weight: 600; }}
.bar {{ display: block; width: 9rem; height: .7rem; border: 1px solid {BAR_BORDER};
  background: {BAR_REST}; }}
.bar .up {{ fill: {BAR_UPGRADED}; }}
.bar .fail {{ fill: {BAR_FAILED}; }}
dl.facts {{ display: grid; grid-template-columns: max-content 1fr; gap: .3rem 1.25rem;
  margin: .5rem 0; }}
dl.facts dt {{ font-weight: 600; }}
dl.facts dd {{ margin: 0; overflow-wrap: anywhere; }}
table.narrow {{ width: auto; min-width: 24rem; }}
td.num, th.num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.stale {{ color: {TEXT_COLOURS["stale"][0]}; background: {TEXT_COLOURS["stale"][1]};
  padding: .4rem .6rem; border-radius: .25rem; }}
.vh {{ position: absolute; width: 1px; height: 1px; overflow: hidden;
  clip: rect(0 0 0 0); white-space: nowrap; }}
"""

JS = """\
// fotawatch status page: refresh in place and filter without a reload.
// An enhancement only: the page works without it (form GET, <noscript> meta refresh).
(() => {
  "use strict";
  const seconds = Number(document.body.dataset.refresh) || 0;
  const form = document.getElementById("filter");
  const announce = document.getElementById("announce");
  const stale = document.getElementById("stale");
  let latest = 0;
  let inflight = 0;

  function syncOptions(fresh) {
    const mine = document.getElementById("status");
    const theirs = fresh.getElementById("status");
    if (!mine || !theirs || document.activeElement === mine) return;
    const value = mine.value;
    mine.replaceChildren(...Array.from(theirs.options, (o) => document.importNode(o, true)));
    mine.value = value;
  }

  function show(fresh, userAsked) {
    const live = fresh.getElementById("live");
    if (live) document.getElementById("live").replaceWith(document.importNode(live, true));
    syncOptions(fresh);
    document.title = fresh.title;
    if (stale) stale.hidden = true;
    if (userAsked && announce) {
      const summary = fresh.getElementById("summary");
      announce.textContent = summary ? summary.textContent : "";
    }
  }

  // Each load has a number; an answer that a newer load (a filter change) overtook is dropped.
  async function load(url, userAsked) {
    const mine = ++latest;
    inflight += 1;
    try {
      const response = await fetch(url, {
        headers: { Accept: "text/html" }, credentials: "same-origin", cache: "no-store",
      });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const text = await response.text();
      if (mine === latest) show(new DOMParser().parseFromString(text, "text/html"), userAsked);
    } catch (err) {
      if (stale && mine === latest) {
        stale.hidden = false;
        stale.textContent = "Could not refresh (" + err.message + "); showing older data.";
      }
    } finally {
      inflight -= 1;
    }
  }

  if (form) {
    const select = form.elements.namedItem("status");
    const apply = () => {
      const url = new URL(location.href);
      if (select.value) url.searchParams.set("status", select.value);
      else url.searchParams.delete("status");
      history.replaceState(null, "", url);
      load(url.href, true);
    };
    select.addEventListener("change", apply);
    form.addEventListener("submit", (event) => { event.preventDefault(); apply(); });
  }
  if (seconds > 0) {
    setInterval(() => {
      if (!document.hidden && inflight === 0) load(location.href, false);
    }, seconds * 1000);
  }
})();
"""

# name -> (content type, body)
ASSETS: dict[str, tuple[str, str]] = {
    "status.css": ("text/css", CSS),
    "status.js": ("text/javascript", JS),
}
