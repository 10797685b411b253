"""Every command in every format, with mod_jk's names and Result lines (§5.2, §9.8)."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from balancer.status.prometheus import CONTENT_TYPE
from tests.unit.test_lb_driver import REFUSED
from tests.unit.test_status_kit import Kit, header, prop_map, text, txt_lines

NS = "{http://tomcat.apache.org}"


def xml_of(resp) -> ET.Element:
    return ET.fromstring(resp.body)


# -- txt --------------------------------------------------------------------------------------


def test_txt_list_has_mod_jk_lines_in_order():
    body = text(Kit().get("mime=txt"))
    kinds = [line.split(":", 1)[0] for line in body.splitlines()]
    assert kinds == [
        "Server",
        "Time",
        "Software",
        "Balancer Workers",
        "Balancer Worker",
        "Member",
        "Member",
        "Member",
        "Map",
        "Map",
        "AJP Workers",
        "AJP Worker",
        "Map",
        "Result",
    ]
    assert "Balancer Workers: count=1\n" in body
    assert "AJP Workers: count=1\n" in body
    assert body.endswith('Result: type=OK message="Action finished"\n')


def test_txt_quotes_route_redirect_and_domain_like_mod_jk():
    (n1, *_) = txt_lines(Kit().get("mime=txt"), "Member")
    line = next(
        x for x in text(Kit().get("mime=txt")).splitlines() if x.startswith("Member: name=n1")
    )
    assert ' route="n1" redirect="" domain="" ' in line
    assert " activation=ACT lbfactor=1 " in line
    assert n1["state"] == "OK/IDLE"


def test_txt_member_fields_are_mod_jk_s_then_pyjk_s():
    (n1, *_) = txt_lines(Kit().get("mime=txt"), "Member")
    keys = list(n1)
    mod_jk = [
        "name",
        "type",
        "host",
        "port",
        "address",
        "source",
        "connection_pool_timeout",
        "ping_timeout",
        "connect_timeout",
        "prepost_timeout",
        "reply_timeout",
        "retries",
        "connection_ping_interval",
        "recovery_options",
        "busy_limit",
        "max_packet_size",
        "activation",
        "lbfactor",
        "route",
        "redirect",
        "domain",
        "distance",
        "state",
        "lbmult",
        "lbvalue",
        "elected",
        "sessions",
        "errors",
        "client_errors",
        "reply_timeouts",
        "transferred",
        "read",
        "busy",
        "max_busy",
        "connected",
        "max_connected",
        "time_to_recover_min",
        "time_to_recover_max",
        "last_reset_at",
        "last_reset_ago",
    ]
    assert keys[: len(mod_jk)] == mod_jk
    assert keys[len(mod_jk) :] == [
        "rating",
        "retry_interval",
        "live_sessions",
        "drained",
        "sticky_hits",
        "sticky_misses",
        "failovers",
        "last_error",
        "origin",
        "joined_at",
    ]


def test_txt_lb_line_has_the_summary():
    (lb,) = txt_lines(Kit().get("mime=txt"), "Balancer Worker")
    assert lb["name"] == "lb" and lb["type"] == "lb"
    assert (lb["sticky_session"], lb["sticky_session_force"]) == ("True", "False")
    assert (lb["method"], lb["lock"]) == ("Request", "Optimistic")
    assert (lb["member_count"], lb["good"], lb["degraded"], lb["bad"]) == ("3", "3", "0", "0")
    assert lb["map_count"] == "2"
    assert lb["last_reset_at"] == "1700000000" and lb["last_reset_ago"] == "10"


def test_error_times_appear_once_a_member_failed():
    kit = Kit()
    kit.drive({"n1": REFUSED}, cookie="JSESSIONID=x.n1")
    kit.now += 4
    members = {m["name"]: m for m in txt_lines(kit.get("mime=txt"), "Member")}
    assert members["n1"]["state"] == "ERR"
    # the failure was at 10 s (a refused connect is retried without a pause), read at 14 s
    assert members["n1"]["error_time_ago"] == "4"
    assert members["n1"]["error_time_tz"] == "UTC"
    assert int(members["n1"]["error_time_unix_seconds"]) == 1_700_000_010
    assert members["n1"]["last_error"] == "connect-refused"
    assert "error_time_ago" not in members["n2"]
    # recovery comes with the first maintenance run (every 60 s) after recover_time (60 s):
    # at 120 s, 106 s from now; the maintenance timer may be a tick late
    assert (members["n1"]["time_to_recover_min"], members["n1"]["time_to_recover_max"]) == (
        "106",
        "107",
    )


def test_txt_map_lines_list_the_lb_s_rules():
    maps = txt_lines(Kit().get("mime=txt&cmd=show&w=lb"), "Map")
    assert [(m["id"], m["uri"], m["type"], m["source"]) for m in maps] == [
        ("1", "/app/*", "Wildchar", "uriworkermap"),
        ("2", "/app", "Exact", "uriworkermap"),
    ]


def test_show_prints_one_worker_without_counts():
    body = text(Kit().get("mime=txt&cmd=show&w=lb&sw=n2"))
    assert "Balancer Workers" not in body and "AJP Worker" not in body
    assert [m["name"] for m in txt_lines(Kit().get("mime=txt&cmd=show&w=lb&sw=n2"), "Member")] == [
        "n2"
    ]
    assert "Balancer Worker: name=lb" in body


def test_show_of_a_single_member_worker():
    resp = Kit().get("mime=txt&cmd=show&w=solo")
    (solo,) = txt_lines(resp, "AJP Worker")
    assert solo["name"] == "solo" and solo["used"] == "0" and solo["map_count"] == "1"
    assert "elected" not in solo


def test_version_prints_only_the_header():
    body = text(Kit().get("mime=txt&cmd=version"))
    assert [line.split(":")[0] for line in body.splitlines()] == [
        "Server",
        "Time",
        "Software",
        "Result",
    ]
    assert 'web_server="pyjk/0.1.0" jk_version=pyjk/0.1.0' in body


def test_edit_in_a_text_format_answers_with_the_result_only():
    body = text(Kit().get("mime=txt&cmd=edit&w=lb"))
    assert body == 'Result: type=OK message="Action finished"\n'


# -- prop -------------------------------------------------------------------------------------


def test_prop_looks_like_workers_properties():
    props = prop_map(Kit().get("mime=prop"))
    assert props["worker.list"] == ["lb", "solo"]
    assert props["worker.lb.balance_workers"] == ["n1", "n2", "n3"]  # once per member
    assert props["worker.lb.type"] == ["lb"]
    assert props["worker.n1.route"] == ["n1"]  # unquoted
    assert props["worker.n1.redirect"] == [""]
    assert props["worker.n3.lbfactor"] == ["2"]
    assert props["worker.lb.map.1.uri"] == ["/app/*"]
    assert props["worker.lb_count"] == ["1"] and props["worker.ajp_count"] == ["1"]
    assert props["worker.solo.used"] == ["0"]
    assert props["worker.result.type"] == ["OK"]
    assert props["worker.result.message"] == ["Action finished"]
    assert props["worker.lb.last_reset_at"] == ["1700000000"]  # once: not repeated per member


def test_prop_uses_the_configured_prefix():
    props = prop_map(Kit(status={"prefix": "jk"}).get("mime=prop"))
    assert props["jk.list"] == ["lb", "solo"]
    assert props["jk.result.type"] == ["OK"]


def test_prop_errors_end_with_result_lines():
    resp = Kit().get("mime=prop&cmd=nope")
    assert resp.status == 400
    assert text(resp) == "worker.result.type=ERROR\nworker.result.message=Invalid command.\n"


# -- xml --------------------------------------------------------------------------------------


def test_xml_elements_and_namespace():
    root = xml_of(Kit().get("mime=xml"))
    assert root.tag == NS + "status"
    assert [c.tag.removeprefix(NS) for c in root] == [
        "server",
        "time",
        "software",
        "balancers",
        "ajp_workers",
        "result",
    ]
    balancers = root.find(NS + "balancers")
    assert balancers is not None and balancers.get("count") == "1"
    (lb,) = balancers
    assert lb.get("name") == "lb" and lb.get("sticky_session") == "True"
    assert [m.get("name") for m in lb.findall(NS + "member")] == ["n1", "n2", "n3"]
    assert [m.get("uri") for m in lb.findall(NS + "map")] == ["/app/*", "/app"]
    ajp = root.find(NS + "ajp_workers")
    assert ajp is not None and ajp.find(NS + "ajp").get("name") == "solo"  # type: ignore[union-attr]
    result = root.find(NS + "result")
    assert result is not None
    assert (result.get("type"), result.get("message")) == ("OK", "Action finished")


def test_xml_result_line_is_mod_jk_s():
    body = text(Kit().post({"cmd": "reset", "w": "lb", "mime": "xml"}))
    assert body.startswith('<?xml version="1.0" encoding="UTF-8" ?>\n')
    assert '<jk:result\n    type="OK"\n    message="Action finished"/>' in body


def test_xml_ns_xmlns_and_doctype_come_from_the_config():
    kit = Kit(status={"ns": "-", "xmlns": "-", "doctype": "<!DOCTYPE status>"})
    body = text(kit.get("mime=xml"))
    assert body.splitlines()[1] == "<!DOCTYPE status>"
    root = ET.fromstring(body.split("\n", 2)[2])
    assert root.tag == "status"
    assert root.find("result") is not None
    other = Kit(status={"ns": "s:", "xmlns": 'xmlns:s="urn:x"'})
    assert xml_of(other.get("mime=xml")).tag == "{urn:x}status"


def test_xml_dump_is_one_configuration_element():
    root = xml_of(Kit().get("mime=xml&cmd=dump"))
    conf = root.find(NS + "configuration")
    assert conf is not None
    assert conf.get("worker.lb.balance_workers") == "n1,n2,n3"


# -- json -------------------------------------------------------------------------------------


def test_json_keeps_types():
    data = json.loads(Kit().get("mime=json").body)
    lb = data["balancers"][0]
    assert lb["sticky_session"] is True and lb["member_count"] == 3
    n1 = lb["members"][0]
    assert n1["elected"] == 0 and n1["live_sessions"] is None and n1["connected"] is None
    assert data["ajp_workers"][0]["name"] == "solo"
    assert data["result"] == {"type": "OK", "message": "Action finished"}
    assert data["server"]["port"] == 8080


def test_json_dump_and_version():
    kit = Kit()
    assert "worker.lb.type" in json.loads(kit.get("mime=json&cmd=dump").body)["configuration"]
    version = json.loads(kit.get("mime=json&cmd=version").body)
    assert set(version) == {"server", "result"}


# -- prometheus -------------------------------------------------------------------------------


def test_metrics_path_answers_prometheus_text():
    kit = Kit()
    kit.drive(sent=100, received=2000)
    resp = kit.get("", path="/metrics")
    assert resp.status == 200
    assert resp.content_type == CONTENT_TYPE
    body = text(resp)
    assert "# TYPE pyjk_member_requests_total counter" in body
    assert 'pyjk_lb_members{worker="lb"} 3.0' in body
    assert 'pyjk_member_state{member="n1",state="OK/IDLE",worker="lb"}' in body
    assert 'pyjk_member_requests_total{member="solo",worker="solo"} 0.0' in body


def test_mime_prometheus_works_on_any_path_and_the_metrics_path_honours_mime():
    kit = Kit()
    assert kit.get("mime=prometheus").content_type == CONTENT_TYPE
    assert text(kit.get("mime=txt", path="/metrics")).startswith("Server: ")


def test_prometheus_leaves_unknown_values_out():
    body = text(Kit().get("mime=prometheus"))
    assert "pyjk_member_live_sessions{" not in body
    assert "pyjk_member_connected{" not in body


# -- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("cmd=nope&mime=txt", 400, "Invalid command."),
        ("mime=pdf", 400, "Invalid mime type."),
        ("cmd=show&mime=txt", 400, "NULL or EMPTY worker param"),
        ("cmd=show&w=zz&mime=txt", 404, "Could not find given worker"),
        ("cmd=show&w=lb&sw=n7&mime=txt", 404, "could not find sub worker"),
        (
            "cmd=show&w=lb&sw=n*&mime=txt",
            400,
            "wildcard not allowed in sub worker for this command",
        ),
        ("cmd=show&w=solo&sw=solo&mime=txt", 400, "worker type has no sub workers"),
        ("cmd=edit&mime=txt", 400, "NULL or EMPTY worker param"),
    ],
)
def test_errors_have_real_status_codes_and_mod_jk_messages(query, status, message):
    resp = Kit().get(query)
    assert resp.status == status
    assert text(resp) == f'Result: type=ERROR message="{message}"\n'


def test_an_unknown_mime_answers_as_txt():
    resp = Kit().get("mime=pdf")
    assert resp.content_type.startswith("text/plain")


def test_too_many_parameters_are_refused():
    resp = Kit().get("&".join(f"p{i}=1" for i in range(300)))
    assert resp.status == 400


# -- dump -------------------------------------------------------------------------------------


def test_dump_hides_secrets_and_tokens():
    kit = Kit()
    for mime in ("txt", "prop", "xml", "json", "html"):
        body = text(kit.get(f"cmd=dump&mime={mime}"))
        assert "worker.n3.port" in body
        assert "very-secret-ajp" not in body and "n3.secret" not in body
        assert "api-token" not in body and "jkstatus.token" not in body


def test_dump_lines_are_the_effective_config():
    body = text(Kit().get("cmd=dump&mime=txt"))
    assert "Configuration:\nworker.list=lb,solo,jkstatus\n" in body
    assert "worker.jkstatus.allow=10.1.0.0/16\n" in body


# -- pyjk extras ------------------------------------------------------------------------------


def test_live_sessions_and_drained_come_from_the_cluster_view():
    kit = Kit(cluster_view=lambda: {"n1": 5, "n2": 0})
    kit.post({"cmd": "update", "w": "lb", "sw": "n*", "vwa": "d", "mime": "txt"})
    members = {m["name"]: m for m in txt_lines(kit.get("mime=txt"), "Member")}
    assert (members["n1"]["live_sessions"], members["n1"]["drained"]) == ("5", "False")
    assert (members["n2"]["live_sessions"], members["n2"]["drained"]) == ("0", "True")
    assert (members["n3"]["live_sessions"], members["n3"]["drained"]) == ("-", "-")
    (lb,) = txt_lines(kit.get("mime=txt"), "Balancer Worker")
    assert lb["live_sessions"] == "5"


def test_the_lb_shows_its_clusters_sessions_limit_beside_live_sessions():
    kit = Kit(cluster_view=lambda: {"n1": 5, "n2": 7}, cluster_limits=lambda: {"lb": 12})
    (lb,) = txt_lines(kit.get("mime=txt"), "Balancer Worker")
    assert (lb["live_sessions"], lb["sessions_limit"]) == ("12", "12")
    assert "<td>12 / 12</td>" in kit.get("").body.decode()  # the HTML summary: live / limit
    (lb,) = txt_lines(Kit().get("mime=txt"), "Balancer Worker")
    assert lb["sessions_limit"] == "-"
    metrics = text(kit.get("mime=prometheus"))
    assert 'pyjk_lb_sessions_limit{worker="lb"} 12.0' in metrics
    assert 'pyjk_lb_live_sessions{worker="lb"} 12.0' in metrics
    assert "pyjk_lb_sessions_limit{" not in text(Kit().get("mime=prometheus"))


def test_without_a_cluster_view_live_sessions_show_a_dash():
    members = txt_lines(Kit().get("mime=txt"), "Member")
    assert {m["live_sessions"] for m in members} == {"-"}
    assert {m["drained"] for m in members} == {"False"}


def test_a_failing_cluster_view_does_not_break_the_page():
    def broken():
        raise RuntimeError("cluster down")

    resp = Kit(cluster_view=broken).get("mime=txt")
    assert resp.status == 200
    assert {m["live_sessions"] for m in txt_lines(resp, "Member")} == {"-"}


def test_pool_statistics_fill_connected_and_max_connected():
    kit = Kit(pool_stats=lambda member: (2, 7) if member.name == "n1" else None)
    members = {m["name"]: m for m in txt_lines(kit.get("mime=txt"), "Member")}
    assert (members["n1"]["connected"], members["n1"]["max_connected"]) == ("2", "7")
    assert members["n2"]["connected"] == "-"


def test_sticky_and_failover_counters_are_shown():
    kit = Kit()
    kit.drive(cookie="JSESSIONID=a.n2")
    kit.drive({"n2": REFUSED}, cookie="JSESSIONID=a.n2")
    members = {m["name"]: m for m in txt_lines(kit.get("mime=txt"), "Member")}
    assert members["n2"]["sticky_hits"] == "2"
    assert members["n2"]["failovers"] == "1"


# -- opt --------------------------------------------------------------------------------------


@pytest.mark.parametrize("mime", ["txt", "xml", "json", "prop"])
def test_opt_hides_members_maps_lbs_and_ajp_workers_in_every_format(mime):
    kit = Kit()
    full = text(kit.get(f"mime={mime}"))
    assert "n1" in full and "/app/*" in full
    assert "n1" not in text(kit.get(f"mime={mime}&opt=1"))
    assert "/app/*" not in text(kit.get(f"mime={mime}&opt=2"))
    no_lb = text(kit.get(f"mime={mime}&opt=8"))
    assert "n1" not in no_lb and "solo" in no_lb
    assert "solo" not in text(kit.get(f"mime={mime}&opt=0x10"))


def test_refresh_adds_a_meta_refresh_to_html_only():
    kit = Kit()
    assert '<meta http-equiv="refresh" content="7">' in text(kit.get("re=7"))
    assert "refresh" not in text(kit.get("re=7&mime=txt"))
    assert header(kit.get("re=7"), "Refresh") is None
