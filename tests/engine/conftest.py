import pytest

from dsl import compile_source
from engine import Engine

HEADER = '''methodology test.m "测试" version 1.0.0 {
  covers trip
  effective from 2024-01-01
  timezone Asia/Shanghai
}
'''


def compile_text(body: str, header: str = HEADER):
    compiled = compile_source(header + body, "test.tanpu")
    assert compiled.ok, compiled.render()
    return compiled.methodology


@pytest.fixture
def engine_for():
    def build(body: str) -> Engine:
        return Engine(compile_text(body))
    return build
