"""An Engine is immutable: several threads sharing one give the results one thread gives."""

from concurrent.futures import ThreadPoolExecutor

from hypothesis import HealthCheck, given, settings

from tests.engine.strategies import record_stream
from tests.engine.test_scalar import shenzhen

ENGINE = shenzhen()


@settings(max_examples=10, suppress_health_check=[HealthCheck.too_slow])
@given(record_stream(ENGINE.methodology, max_size=30))
def test_threads_agree_with_one_thread(records):
    expected = [r.key() for r in ENGINE.evaluate(records)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        runs = list(pool.map(lambda _: [r.key() for r in ENGINE.evaluate(records)], range(8)))
    assert all(run == expected for run in runs)
