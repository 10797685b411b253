"""``python -m balancer --check``: like ``haproxy -c``, a summary and exit 1 on errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from balancer.__main__ import main

ROOT = Path(__file__).resolve().parents[2]


def test_check_accepts_the_shipped_config_and_summarizes_it(capsys):
    rc = main(
        [
            "--check",
            "--workers",
            str(ROOT / "conf/workers.properties"),
            "--mounts",
            str(ROOT / "conf/uriworkermap.properties"),
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0
    for name in ("node1", "node2", "node3", "jkstatus", "/app/*=lb"):
        assert name in out
    assert out.rstrip().endswith("configuration OK")
    from balancer.config import load_workers

    shipped, _ = load_workers(ROOT / "conf/workers.properties", {})
    lb = shipped.lbs["lb"]  # the demo's lb is dynamic too: pyjk-cluster scale adds to it
    assert lb.cluster == str(ROOT / "conf/cluster.toml") and lb.cluster_template == "template"


def test_check_reports_every_error_with_file_line_and_directive(tmp_path, capsys):
    bad = tmp_path / "workers.properties"
    bad.write_text(
        "worker.list=lb\n"
        "worker.lb.type=lb\n"
        "worker.lb.balance_workers=a,b\n"
        "worker.a.type=http\n"
        "worker.a.hots=x\n"
        "worker.b.type=http\n"
        "worker.b.port=$(NOPE)\n"
    )
    rc = main(["--check", "--workers", str(bad)])
    err = capsys.readouterr().err
    assert rc == 1
    assert f"{bad}:5: worker.a.hots: unknown directive 'hots'; did you mean worker.a.host?" in err
    assert f"{bad}:7: worker.b.port: $(NOPE) is not defined" in err
    assert "2 error(s)" in err


def test_check_rejects_a_mount_naming_an_unknown_worker(tmp_path, capsys):
    mounts = tmp_path / "uriworkermap.properties"
    mounts.write_text("/app/*=lbb\n")
    rc = main(
        ["--check", "--workers", str(ROOT / "conf/workers.properties"), "--mounts", str(mounts)]
    )
    err = capsys.readouterr().err
    assert rc == 1
    assert f"{mounts}:1" in err and "lbb" in err


def test_check_runs_as_a_module_from_the_shell():
    proc = subprocess.run(
        [sys.executable, "-m", "balancer", "--check", "--workers", "conf/workers.properties"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert "configuration OK" in proc.stdout


DYNAMIC = (
    "worker.list=lb\n"
    "worker.lb.type=lb\n"
    "worker.lb.cluster={cluster}\n"
    "worker.lb.cluster_template=worker.template\n"
    "worker.template.type=http\n"
    "worker.template.reply_timeout=30000\n"
)


def test_check_accepts_a_dynamic_lb_without_static_members(tmp_path, capsys):
    (tmp_path / "cluster.toml").write_text('name = "c"\n')
    workers = tmp_path / "workers.properties"
    workers.write_text(DYNAMIC.format(cluster="cluster.toml"))  # relative to the file's folder
    assert main(["--check", "--workers", str(workers)]) == 0
    out = capsys.readouterr().out
    assert f"+ dynamic members from cluster {tmp_path}/cluster.toml template=template" in out
    from balancer.config import load_workers

    config, warnings = load_workers(workers, {})
    assert warnings == []  # the template is used, by the lb
    lb = config.lbs["lb"]
    assert lb.cluster == str(tmp_path / "cluster.toml")
    assert lb.cluster_template == "template" and lb.balance_workers == ()
    assert lb.cluster_allow == ("127.0.0.0/8", "::1/128")
    assert config.members["template"].reply_timeout == 30000


def test_check_rejects_a_cluster_directive_naming_a_missing_file_with_file_and_line(
    tmp_path, capsys
):
    workers = tmp_path / "workers.properties"
    workers.write_text(DYNAMIC.format(cluster="nope/cluster.toml"))
    assert main(["--check", "--workers", str(workers)]) == 1
    err = capsys.readouterr().err
    assert f"{workers}:3: worker.lb.cluster: cluster file {tmp_path}/nope/cluster.toml" in err
    assert "cannot read" in err


def test_check_rejects_a_cluster_directive_naming_an_invalid_file_with_file_and_line(
    tmp_path, capsys
):
    (tmp_path / "cluster.toml").write_text("[membership]\nfrequncy = 500\n")
    workers = tmp_path / "workers.properties"
    workers.write_text(DYNAMIC.format(cluster="cluster.toml"))
    assert main(["--check", "--workers", str(workers)]) == 1
    err = capsys.readouterr().err
    assert f"{workers}:3: worker.lb.cluster: cluster file {tmp_path}/cluster.toml" in err
    assert "membership.frequncy" in err and "did you mean 'membership.frequency'" in err


def test_check_rejects_a_template_that_is_not_a_member_worker(tmp_path, capsys):
    (tmp_path / "cluster.toml").write_text('name = "c"\n')
    workers = tmp_path / "workers.properties"
    text = DYNAMIC.format(cluster="cluster.toml").replace("worker.template.type=http", "") + (
        "worker.template.type=status\n"
    )
    workers.write_text(text)
    assert main(["--check", "--workers", str(workers)]) == 1
    assert "template 'template' is not an http or ajp13 worker" in capsys.readouterr().err
