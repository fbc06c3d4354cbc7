"""A typed client of the Tanpu integrator API (/api/v1).

    from tanpu_client import Client
    client = Client("http://127.0.0.1:5000", token="tanpu_...")
    client.evaluate("cn.shenzhen.public-transit", [{"id": "r1", ...}])
    client.credit("cn.shenzhen.public-transit", records, idempotency_key="day-2024-06-20")
    account = client.create_account("individual", external_id="rider-7")
    client.balance(account["id"])
    for entry in client.statement(account["id"]):   # every page, by the Link header
        ...

Only the standard library: urllib and json. The shapes returned are the TypedDicts below,
as the OpenAPI document declares them (clients ignore fields they do not know).
"""

from __future__ import annotations

from .client import Client, Problem
from .types import (Account, Balance, CreditResponse, EvaluateResponse, PeriodBalances,
                    RecordProblem, ResultRow)

__all__ = ["Client", "Problem", "Account", "Balance", "CreditResponse", "EvaluateResponse",
           "PeriodBalances", "RecordProblem", "ResultRow"]
__version__ = "0.1.0"
