"""Run the launcher with the interpreter of an existing (IndexTTS) environment: helpers for bootstrap.sh.

    PYTHON=/path/to/index-tts/.venv/bin/python ./start_app.sh [flags]

What we add goes into an overlay directory in this checkout (.userenv/<key>/), put on PYTHONPATH;
the user's environment is never written to. pip runs under the user's interpreter with
`--prefix <overlay>`, so it sees every package the environment has and installs only what is
missing (requirements-userenv.txt: prometheus_client, espeakng-loader, tomli on 3.10, and
whatever else of ours the env lacks), with the environment's own versions as constraints (one
`name==version` line per installed distribution): a requirement that would need a different
version of something the env has fails with pip's conflict report naming it, and nothing changes.

Runs under the user's interpreter, so: standard library only, Python >= 3.8.

    python userenv.py overlay            print the overlay dir for this interpreter
    python userenv.py sitedirs           print its site-packages dirs (for PYTHONPATH)
    python userenv.py constraints FILE   write the env's versions as pip constraints
    python userenv.py pip                print how to run pip here ("-m pip" or a wheel path)
    python userenv.py missing REQ        print the lines of REQ this env does not satisfy
    python userenv.py stamp REQ          print the key that says whether the overlay is current
"""
import glob
import hashlib
import os
import re
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def overlay_dir():
    """.userenv/<py version>-<hash of the env's prefix>: one overlay per environment."""
    key = hashlib.sha256(os.path.realpath(sys.prefix).encode()).hexdigest()[:10]
    return os.path.join(HERE, ".userenv", "py%d.%d-%s" % (sys.version_info[0], sys.version_info[1], key))


def site_dirs():
    """Where `pip install --prefix <overlay>` puts packages for this interpreter (PYTHONPATH)."""
    import sysconfig
    ov = overlay_dir()
    dirs = [sysconfig.get_path(k, "posix_prefix", vars={"base": ov, "platbase": ov}) for k in ("purelib", "platlib")]
    return list(dict.fromkeys(dirs))


def env_paths():
    """sys.path without the overlay: the environment as the user built it."""
    ov = os.path.realpath(overlay_dir())
    return [p for p in sys.path if not os.path.realpath(p or ".").startswith(ov)]


def env_versions(with_overlay=False):
    """{normalized name: version} of every distribution the environment has (and, with_overlay,
    what the overlay added; it is on sys.path when bootstrap.sh asks)."""
    from importlib import metadata
    out = {}
    for d in metadata.distributions(path=sys.path if with_overlay else env_paths()):
        name = d.metadata["Name"]
        if name:
            out.setdefault(re.sub(r"[-_.]+", "-", name).lower(), d.version)
    return out


def write_constraints(path):
    lines = ["%s==%s" % kv for kv in sorted(env_versions().items())]
    with open(path, "w") as f:
        f.write("# the environment's own versions: pip may add packages, never change these\n")
        f.write("\n".join(lines) + "\n")


def pip_command():
    """'-m pip' when the env has pip; else the pip wheel bundled with this Python's ensurepip
    (runnable from the wheel, put on PYTHONPATH), so a pip-less uv venv is not written to."""
    from importlib.util import find_spec
    if find_spec("pip") is not None:
        return "-m pip"
    try:
        import ensurepip
    except ImportError:
        return ""
    wheels = sorted(glob.glob(os.path.join(os.path.dirname(ensurepip.__file__), "_bundled", "pip-*.whl")))
    return wheels[-1] if wheels else ""


def _packaging():
    """packaging's requirements/versions: the env's own, else the copy inside pip (env or wheel)."""
    try:
        from packaging.requirements import Requirement
    except ImportError:
        from pip._vendor.packaging.requirements import Requirement
    return Requirement


def missing(req):
    """Lines of `req` this environment and its overlay do not satisfy (absent, or a version outside the range;
    the latter then fails in pip with its conflict report). Empty: nothing to install, no pip run."""
    Requirement = _packaging()
    have = env_versions(with_overlay=True)
    out = []
    with open(req) as f:
        for line in f:
            line = line.split("#", 1)[0].strip()
            if not line:
                continue
            r = Requirement(line)
            if r.marker is not None and not r.marker.evaluate():
                continue
            v = have.get(re.sub(r"[-_.]+", "-", r.name).lower())
            if v is None or not r.specifier.contains(v, prereleases=True):
                out.append(line)
    return out


def stamp(req):
    """Changes when the env's packages, our requirements or the interpreter change."""
    h = hashlib.sha256(sys.version.encode())
    with open(req, "rb") as f:
        h.update(f.read())
    for kv in sorted(env_versions().items()):
        h.update(("%s==%s\n" % kv).encode())
    return h.hexdigest()


def main(argv):
    cmd = argv[1] if len(argv) > 1 else ""
    if cmd == "overlay":
        print(overlay_dir())
    elif cmd == "sitedirs":
        print(os.pathsep.join(site_dirs()))
    elif cmd == "constraints":
        write_constraints(argv[2])
    elif cmd == "pip":
        print(pip_command())
    elif cmd == "missing":
        print("\n".join(missing(argv[2])))
    elif cmd == "stamp":
        print(stamp(argv[2]))
    else:
        print(__doc__, file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
