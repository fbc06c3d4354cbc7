"""Every route, web and API, fed the hostile values of issue 17 answers below 500: a number
beyond any integer (in the path, the page, a filter), a NUL, text of 5,000 characters,
a date in year 1, wrong JSON types (`"account": true`, a list for a string), deeply
nested JSON — as an administrator, as an integrator with a token, and signed out, on
SQLite and PostgreSQL. Routes are read from the application's URL map, so a route added
later is fed too."""

from __future__ import annotations

import pytest

from tests.webui.reviewkit import *  # noqa: F401,F403 - fixtures

HUGE = "99999999999999999999"
PATH_VALUES = [HUGE, "0", "te\x00st", "x" * 5_000, "字", "..%2F..%2Fetc"]
QUERY = [
    {"page": HUGE, "per_page": HUGE, "actor": HUGE, "account": HUGE, "cursor": HUGE,
     "limit": HUGE, "from": "0001-01-01", "to": "9999-12-31", "since": HUGE},
    {"page": "-1", "q": "\x00", "actor": "a\x00b", "kind": "unit\x00", "state": "x" * 5_000,
     "from": "0001-01-01T00:00", "lang": "zz", "format": "\x00"},
]
FORMS = [
    {"name": "x" * 5_000, "email": "\x00", "password": HUGE, "reason": "\x00",
     "quorum": HUGE, "role": "\x00", "version": HUGE, "effective_from": "0001-01-01",
     "source": "methodology \x00", "records": "id\n\x00", "kind": "unit", "parent": HUGE,
     "points": HUGE, "price_points": HUGE, "stock": "-1", "amount": HUGE},
]
JSON_BODIES = [
    {"methodology": True, "records": {"id": 1}, "explain": "yes", "account": True,
     "kind": ["unit"], "parent_id": HUGE, "external_id": None, "reason": 12,
     "idempotency_key": {"a": 1}, "reward": HUGE, "amount": "1e999 kg"},
    {"methodology": "test.transit", "records": [{"id": True, "account": True, "distance": [1],
                                                  "boarded": "0001-01-01T00:00"}]},
    [[[[[[[[[[[]]]]]]]]]]],
]


def _routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.rule.startswith("/static"):
            continue
        yield rule


def _all_urls(rule):
    """The rule with every argument set to each hostile value in turn (an int converter
    gets only the numbers: anything else is its 404)."""
    import re
    from urllib.parse import quote

    names = list(rule.arguments)
    if not names:
        return [rule.rule]
    urls = []
    for value in PATH_VALUES:
        url = rule.rule
        for name in names:
            converter = type(rule._converters[name]).__name__
            if converter in ("IntegerConverter", "NumberConverter") and not value.isdigit():
                break
            url = re.sub(r"<(?:[^:<>]+:)?" + re.escape(name) + r">", quote(value, safe="%"), url)
        else:
            urls.append(url)
    return urls


def _send(client, method, url, headers, *, api: bool):
    """One request per hostile query, form or body; each response is given before the
    next request is made (a streamed one is closed by the caller first)."""
    from urllib.parse import urlencode

    if method in ("GET", "HEAD"):
        for query in QUERY:
            yield client.open(url + "?" + urlencode(query), method=method, headers=headers)
    elif api:
        for body in JSON_BODIES:
            yield client.open(url, method=method, json=body, headers=headers)
    else:
        for form in FORMS:
            yield client.open(url, method=method, data=form, headers=headers)


@pytest.mark.parametrize("who", ["administrator", "integrator", "signed out"])
def test_no_route_answers_5xx_to_hostile_values(web, who):
    web.published("1.0.0")
    headers = {}
    if who == "administrator":
        client = web.login(web.reg.admin)
    else:
        client = web.app.test_client()
        if who == "integrator":
            headers = web.api(web.token())
    failures = []
    count = 0
    for rule in _routes(web.app):
        if rule.rule.endswith("/logout") or rule.endpoint.endswith(".logout"):
            continue  # (signing out mid-way would make the rest run signed out)
        api = rule.rule.startswith("/api/")
        for url in _all_urls(rule):
            for method in sorted(rule.methods - {"OPTIONS", "HEAD"}):
                for response in _send(client, method, url, headers, api=api):
                    count += 1
                    if response.status_code >= 500:
                        failures.append(f"{method} {url[:120]!r} -> {response.status_code}")
                    response.close()  # (a streamed CSV ends its generator here)
    assert count > 300  # the routes were found and fed
    assert failures == [], "\n".join(failures)
