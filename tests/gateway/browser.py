"""What the browser tests share: axe-core's findings on a page, and what does not fit a
phone's width."""

from __future__ import annotations

from tests.support import ROOT

AXE = ROOT / "node_modules" / "axe-core" / "axe.min.js"


def axe_violations(page) -> list[str]:  # type: ignore[no-untyped-def]
    """axe-core's violations on the page as it is now (the context must bypass the CSP,
    which would refuse axe's script)."""
    assert AXE.exists(), "axe-core is missing: run make install"
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        page.add_script_tag(path=str(AXE))
    found = page.evaluate("""async () => {
        const result = await window.axe.run(document, {resultTypes: ['violations']});
        return result.violations.map((v) => `${v.id} (${v.impact}): ` +
            v.nodes.map((n) => n.target.join(' ')).join(', '));
    }""")
    return list(found)


def off_screen(page) -> list[str]:  # type: ignore[no-untyped-def]
    """Visible buttons and links not fully inside the window's width, and any sideways
    scrolling of the whole page."""
    outside = page.evaluate("""() => [...document.querySelectorAll('button, a')]
        .filter((b) => b.offsetParent !== null && !b.closest('.history, .thumbs, .swagger-ui'))
        .map((b) => [b.id || b.textContent.trim().slice(0, 30), b.getBoundingClientRect()])
        .filter(([, r]) => r.left < 0 || r.right > window.innerWidth || r.width === 0)
        .map(([name, r]) => `${name}: ${Math.round(r.left)}..${Math.round(r.right)}`)""")
    width = page.evaluate("() => document.documentElement.scrollWidth")
    if width > page.viewport_size["width"]:
        outside.append(f"the page scrolls sideways: {width} px")
    return list(outside)
