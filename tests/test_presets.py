"""Preset data: the shipped defaults, CPU syntax, validation, operator files and error locations."""
import pytest

from tuning.presets import PresetError, Preset, load_presets, parse_cpu_list, resolve_cpus


def test_shipped_defaults():
    p = load_presets()
    assert list(p) == ["default", "pinned", "priority", "pinned-priority", "realtime", "background", "isolated"]
    assert p.allowed == list(p)
    d = p["default"]
    assert (d.cpus, d.nice, d.policy, d.rt_priority, d.torch_threads) == (None, None, None, 0, None)
    assert p["pinned"].cpus == "last:1" and p["pinned"].nice is None
    assert p["priority"].nice == -10 and p["priority"].cpus is None
    assert (p["pinned-priority"].cpus, p["pinned-priority"].nice) == ("last:1", -10)
    assert (p["realtime"].policy, p["realtime"].rt_priority) == ("fifo", 10)
    assert (p["background"].nice, p["background"].policy) == (10, "batch")
    iso = p["isolated"]
    assert (iso.cpus, iso.nice, iso.policy, iso.away) == ("last:1", -10, None, ("irqs", "workqueues", "kthreads"))
    assert all(x.description for x in p.values())


def test_cpu_lists():
    assert parse_cpu_list("0,2-3") == {0, 2, 3}
    assert parse_cpu_list("1") == {1}
    assert parse_cpu_list(" 0 - 1 ".replace(" ", "")) == {0, 1}
    for bad in ("", "a", "3-1", "0,,1", "-1", "0;1"):
        with pytest.raises(ValueError):
            parse_cpu_list(bad)


def test_relative_cpu_specs_work_on_small_and_large_machines():
    assert resolve_cpus("last:1", [0, 1]) == {1}
    assert resolve_cpus("last:1", [0]) == {0}
    assert resolve_cpus("last:2", range(64)) == {62, 63}
    assert resolve_cpus("first:2", [3, 5, 7]) == {3, 5}
    assert resolve_cpus("last:8", [0, 1]) == {0, 1}  # more than there are: all of them
    assert resolve_cpus("all", [0, 1]) == {0, 1}
    assert resolve_cpus("0,2", [0, 1]) == {0, 2}  # absolute: checked against online CPUs when applied
    with pytest.raises(ValueError):
        resolve_cpus("last:0", [0, 1])


@pytest.mark.parametrize("kw, field", [
    ({"nice": 20}, "nice"), ({"nice": -21}, "nice"), ({"nice": True}, "nice"),
    ({"policy": "deadline"}, "policy"),
    ({"policy": "fifo"}, "rt_priority"), ({"policy": "rr", "rt_priority": 100}, "rt_priority"),
    ({"policy": "other", "rt_priority": 5}, "rt_priority"), ({"rt_priority": 5}, "rt_priority"),
    ({"cpus": "x"}, "cpus"), ({"cpus": 3}, "cpus"), ({"torch_threads": 0}, "torch_threads"),
])
def test_validation(kw, field):
    with pytest.raises(PresetError, match=field):
        Preset(name="x", **kw)


def test_valid_edges():
    Preset(name="a", nice=-20, policy="idle")
    Preset(name="b", nice=19, policy="rr", rt_priority=99, cpus="0-1", torch_threads=2)
    Preset(name="c", policy="fifo", rt_priority=1)


def test_operator_file_adds_overrides_and_restricts(tmp_path):
    f = tmp_path / "ops.toml"
    f.write_text('allowed = ["default", "pinned", "mine"]\n\n'
                 '[presets.pinned]\ncpus = "0"\ndescription = "site pin"\n\n'
                 '[presets.mine]\ncpus = "first:1"\nnice = 5\npolicy = "batch"\ntorch_threads = 1\n')
    p = load_presets(str(f))
    assert p.allowed == ["default", "pinned", "mine"]
    assert [x.name for x in p.offered()] == ["default", "pinned", "mine"]
    assert p["pinned"].cpus == "0" and p["pinned"].source == str(f)  # replaced as a whole
    assert p["mine"].nice == 5 and p["mine"].torch_threads == 1
    assert "realtime" in p  # still defined, just not offered


def _err(tmp_path, text):
    f = tmp_path / "bad.toml"
    f.write_text(text)
    with pytest.raises(PresetError) as ei:
        load_presets(str(f))
    assert str(f) in str(ei.value)
    return ei.value


def test_syntax_error_names_file_and_line(tmp_path):
    e = _err(tmp_path, '[presets.a]\nnice = 1\ncpus = "0\n')
    assert e.line == 3 and ":3:" in str(e)


def test_semantic_errors_name_the_line(tmp_path):
    e = _err(tmp_path, '# site presets\n\n[presets.a]\ndescription = "x"\nnice = 40\n')
    assert e.line == 5 and "nice" in str(e)
    e = _err(tmp_path, '[presets.a]\nnice = 1\n\n[presets.b]\npolicy = "fifo"\nrt_priority = 0\n')
    assert e.line == 6 and "rt_priority" in str(e)
    e = _err(tmp_path, '[presets.a]\npolicy = "fifo"\n')  # missing key: point at the table
    assert e.line == 1
    e = _err(tmp_path, '[presets.a]\nnice = 1\ncolour = "red"\n')
    assert e.line == 3 and "colour" in str(e)
    e = _err(tmp_path, 'allowed = ["default", "nope"]\n')
    assert e.line == 1 and "nope" in str(e)


def test_missing_file(tmp_path):
    with pytest.raises(PresetError, match="cannot read"):
        load_presets(str(tmp_path / "none.toml"))
