"""Readable at phone width (issue 15, item 8): at 375 px, in Chinese, every link of the
menu is on screen and can be followed, and no page of the menu is wider than the screen
(nothing to scroll sideways, nothing clipped in the top bar)."""

from __future__ import annotations

from .conftest import PASSWORD, PEOPLE

WIDTH = 375


def _phone(browser, server, key: str):
    person = next(p for p in PEOPLE if p.key == key)
    context = browser.new_context(base_url=server.url, locale="zh-CN",
                                  viewport={"width": WIDTH, "height": 740})
    context.set_default_timeout(30_000)
    page = context.new_page()
    page.goto("/login")
    page.locator('input[name="email"]').fill(person.email)
    page.locator('input[name="password"]').fill(PASSWORD)
    page.locator('form button[type="submit"]').click()
    page.wait_for_url(lambda url: "/login" not in url)
    return context, page


def _overflowing(page) -> list[str]:
    """Elements of the top bar whose content is wider than they are, and the page when it
    is wider than the screen."""
    return page.evaluate("""(width) => {
        const out = [];
        if (document.documentElement.scrollWidth > width + 1) {
            out.push('page ' + document.documentElement.scrollWidth);
            for (const el of document.querySelectorAll('main *')) {
                const box = el.getBoundingClientRect();
                if (box.right > width + 1 && !el.closest('.scroll') && !(el.firstElementChild && el.firstElementChild.getBoundingClientRect().right > width + 1))
                    out.push(el.tagName + '.' + el.className + ' ' + Math.round(box.right));
            }
        }
        for (const el of document.querySelectorAll('.topbar, .topbar *')) {
            if (el.classList.contains('who')) continue;  /* a long name ends in an ellipsis */
            if (el.scrollWidth > el.clientWidth + 1 && getComputedStyle(el).overflowX !== 'visible')
                out.push(el.tagName + '.' + el.className);
            const box = el.getBoundingClientRect();
            if (box.width && (box.right > width + 1 || box.left < -1)) out.push(el.tagName + '.' + el.className + ' off screen');
        }
        return out;
    }""", WIDTH)


def test_the_menu_works_at_phone_width(browser, server):
    for key in ("admin", "integrator", "expert"):
        context, page = _phone(browser, server, key)
        try:
            links = page.locator("nav.mainnav a")
            hrefs = [links.nth(i).get_attribute("href") for i in range(links.count())]
            assert len(hrefs) >= 2, (key, hrefs)
            if key == "integrator":
                assert "/integrations/tokens" in hrefs and "/editor/" not in hrefs
            for href in hrefs:
                link = page.locator(f'nav.mainnav a[href="{href}"]')
                box = link.bounding_box()
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= WIDTH, (key, href, box)
                link.click()
                page.wait_for_load_state()
                assert page.url.split("?")[0].endswith(href), (key, href, page.url)
                assert _overflowing(page) == [], (key, href, ' | '.join(_overflowing(page)))
                page.screenshot(path=str(server.log.parent / f"phone-{key}-{href.strip('/').replace('/', '-') or 'home'}.png"))
        finally:
            context.close()
