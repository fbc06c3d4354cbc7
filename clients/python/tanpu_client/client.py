"""The client: one method per operation of /api/v1 that integrators use most."""

from __future__ import annotations

import json
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, cast

from .types import Account, Balance, CreditResponse, EvaluateResponse, PeriodBalances

_NEXT = re.compile(r'<([^>]+)>;\s*rel="next"')


class Problem(Exception):
    """An error answer of the API (RFC 9457 problem details)."""

    def __init__(self, status: int, body: Mapping[str, Any], headers: Mapping[str, str]):
        self.status = status
        self.body = dict(body)
        self.code: str = str(body.get("code", ""))
        self.detail: str = str(body.get("detail", ""))
        self.errors: List[Dict[str, Any]] = list(body.get("errors") or [])
        self.request_id: str = str(body.get("request_id") or headers.get("X-Request-Id", ""))
        self.retry_after: Optional[int] = (int(headers["Retry-After"])
                                           if str(headers.get("Retry-After", "")).isdigit()
                                           else None)
        super().__init__(f"{status} {self.code}: {self.detail} (request {self.request_id})")


class Client:
    """`base_url`: the server (https://tanpu.example.org); `token`: an integrator's API
    token. `retries`: how often a 429 is retried after its Retry-After (default 2)."""

    def __init__(self, base_url: str, token: str, *, timeout: float = 60.0, retries: int = 2):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.last_request_id: Optional[str] = None

    # ------------------------------------------------------------ transport
    def request(self, method: str, path: str, body: Any = None, *,
                params: Optional[Mapping[str, Any]] = None,
                headers: Optional[Mapping[str, str]] = None) -> Any:
        """The JSON answer of `method path` (a path under /api/v1, or a full URL)."""
        return self._send(method, path, body, params=params, headers=headers)[0]

    def _send(self, method: str, path: str, body: Any = None, *,
              params: Optional[Mapping[str, Any]] = None,
              headers: Optional[Mapping[str, str]] = None):
        url = path if path.startswith(("http://", "https://")) else \
            self.base_url + (path if path.startswith("/api/") else "/api/v1" + path)
        if params:
            query = {k: ("true" if v is True else "false" if v is False else v)
                     for k, v in params.items() if v is not None}
            url += ("&" if "?" in url else "?") + urllib.parse.urlencode(query)
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        sent = {"Authorization": f"Bearer {self.token}", "Accept": "application/json",
                **({"Content-Type": "application/json"} if data is not None else {}),
                **dict(headers or {})}
        for attempt in range(self.retries + 1):
            request = urllib.request.Request(url, data=data, method=method, headers=sent)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    self.last_request_id = response.headers.get("X-Request-Id")
                    text = response.read()
                    return (json.loads(text) if text else None), response.headers
            except urllib.error.HTTPError as error:
                self.last_request_id = error.headers.get("X-Request-Id")
                raw = error.read()
                try:
                    problem = json.loads(raw) if raw else {}
                except ValueError:
                    problem = {"detail": raw.decode("utf-8", "replace")}
                failure = Problem(error.code, problem, error.headers)
                if error.code == 429 and attempt < self.retries:
                    time.sleep(min(failure.retry_after or 1, 60))
                    continue
                raise failure from None
        raise AssertionError("unreachable")  # pragma: no cover

    def _pages(self, path: str, params: Optional[Mapping[str, Any]] = None,
               items: str = "items") -> Iterator[Dict[str, Any]]:
        """Every item of a paged listing, following the Link rel="next" headers."""
        url: Optional[str] = path
        while url:
            body, headers = self._send("GET", url, params=params)
            params = None  # the next URL carries them
            found = body
            for part in items.split("."):
                found = found[part]
            yield from found
            link = _NEXT.search(headers.get("Link") or "")
            url = self.base_url + link.group(1) if link else None

    # ------------------------------------------------------------ evaluation, credits
    def evaluate(self, methodology: str, records: Sequence[Mapping[str, Any]], *,
                 explain: bool = False, as_of: Optional[str] = None,
                 compact: bool = True) -> EvaluateResponse:
        """Each record evaluated by the version applicable at its time; nothing credited.

        compact (default): the server sends each version once (`"compact": true`, about
        half the bytes for a large batch) and the results are given back here with their
        version's fields filled in, as a server without it answers (compact=False)."""
        body: Dict[str, Any] = {"methodology": methodology, "records": list(records),
                                "explain": explain}
        if as_of is not None:
            body["as_of"] = as_of
        if compact:
            body["compact"] = True
        out = self.request("POST", "/evaluate", body)
        groups = out.pop("groups", None)
        if groups is not None:
            out["results"] = [_expanded(row, groups) for row in out["results"]]
        return cast(EvaluateResponse, out)

    def credit(self, methodology: str, records: Sequence[Mapping[str, Any]], *,
               idempotency_key: Optional[str] = None) -> CreditResponse:
        """Evaluated and credited in one transaction; a record id is credited once, and a
        replay with the same key writes nothing and answers the same."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return cast(CreditResponse, self.request(
            "POST", "/credits", {"methodology": methodology, "records": list(records)},
            headers=headers))

    # submit_job(...): large files in the background (the jobs endpoint) goes here.

    # ------------------------------------------------------------ accounts
    def create_account(self, kind: str, *, parent: Optional[int] = None,
                       name: Optional[str] = None, domains: Optional[Sequence[str]] = None,
                       external_id: Optional[str] = None,
                       idempotency_key: Optional[str] = None) -> Account:
        """A new account; with `idempotency_key`, a retry makes it once."""
        body: Dict[str, Any] = {"kind": kind}
        for key, value in (("parent", parent), ("name", name), ("external_id", external_id),
                           ("domains", list(domains) if domains is not None else None)):
            if value is not None:
                body[key] = value
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return cast(Account, self.request("POST", "/accounts", body, headers=headers))

    def account(self, account_id: int) -> Account:
        return cast(Account, self.request("GET", f"/accounts/{int(account_id)}"))

    def accounts(self, *, kind: Optional[str] = None, status: Optional[str] = None,
                 parent: Optional[int] = None, per_page: int = 100) -> Iterator[Account]:
        """Every account you see, a page at a time."""
        params = {"kind": kind, "status": status, "parent": parent, "per_page": per_page}
        return cast(Iterator[Account], self._pages("/accounts", params))

    def link(self, account_id: int, external_id: str) -> Account:
        """Your id for an account (idempotent)."""
        quoted = urllib.parse.quote(external_id, safe="")
        return cast(Account, self.request("PUT", f"/accounts/{int(account_id)}/identities/{quoted}"))

    def balance(self, account_id: int) -> Balance:
        """The account's totals and its subtree's."""
        return cast(Balance, self.request("GET", f"/accounts/{int(account_id)}/balance"))

    def balances(self, account_id: int, *, period: str = "month", start: Optional[str] = None,
                 end: Optional[str] = None, timezone: Optional[str] = None,
                 subtree: bool = False) -> PeriodBalances:
        """Reduction, points and bonus per period (day, week, month, year) and methodology."""
        return cast(PeriodBalances, self.request(
            "GET", f"/accounts/{int(account_id)}/balances",
            params={"period": period, "from": start, "to": end, "timezone": timezone,
                    "subtree": subtree or None}))

    def statement(self, account_id: int, *, limit: int = 100,
                  methodology: Optional[str] = None) -> Iterator[Dict[str, Any]]:
        """The account's entries in the order they were written, every page."""
        return self._pages(f"/accounts/{int(account_id)}/statement",
                           {"limit": limit, "methodology": methodology})

    def credits_of(self, record_id: str) -> List[Dict[str, Any]]:
        """Your credits of one of your record ids."""
        quoted = urllib.parse.quote(record_id, safe="")
        return list(self.request("GET", f"/credits/{quoted}")["items"])


def _expanded(row: Dict[str, Any], groups: List[Dict[str, Any]]) -> Dict[str, Any]:
    """A compact result with its version group's fields (methodology, version, content
    hash, applicability) in place of `group`."""
    group = row.pop("group")
    row.update(groups[group])
    return row
