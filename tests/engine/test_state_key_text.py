"""engine/state.py writes a duplicate rule's keys of strings without json's encoder per
key: the stored state must stay the same text (equal states are equal text, and a state
written before is read and written back), so the texts are compared with json's."""

import json
import random

from engine.state import AccountState

from .test_rules_differential import ENGINES


def _keys(rng: random.Random) -> list[tuple]:
    alphabet = ['a', 'Z', '0', ' ', '"', '\\', '/', '\n', '\t', '\x00', '\x1f', '\x7f', 'é',
                '订', '单', '\u2028', '\ud800', '😀', "'", ',', '[', ']']
    def text():
        return "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8)))
    values = [text, lambda: rng.randrange(-10 ** 12, 10 ** 12), lambda: True, lambda: None,
              lambda: 1.5, lambda: 10 ** 20]
    keys = []
    for _ in range(3000):
        n = rng.randrange(1, 4)
        if rng.random() < 0.7:
            keys.append(tuple(text() for _ in range(n)))
        else:
            keys.append(tuple(rng.choice(values)() for _ in range(n)))
    return keys


def test_a_states_keys_are_json_s_text_of_each_key():
    rng = random.Random(7)
    encoder = json.JSONEncoder(ensure_ascii=False)
    engines = [e for e in ENGINES.values() if e.rules.duplicates]
    assert engines
    keys = _keys(rng)
    for engine in engines:
        rules = engine.rules
        state = AccountState.empty(rules)
        state.keys[0] = set(keys)
        data = json.loads(state.to_json(rules))
        assert sorted(encoder.encode(list(k)) for k in set(keys)) in data.values()
        assert AccountState.from_json(rules, state.to_json(rules)).keys[0] == set(keys)
