"""A short human-readable account of a loaded WorkersConfig (for ``--check`` and logs)."""

from __future__ import annotations

from balancer.config.model import MemberConfig, WorkersConfig


def _member_line(member: MemberConfig) -> str:
    host = f"[{member.host}]" if ":" in member.host else member.host
    parts = [
        f"{member.name}",
        f"{member.type} {host}:{member.port}",
        f"route={member.route}",
        f"lbfactor={member.lbfactor}",
        f"activation={member.activation.value}",
    ]
    if member.domain:
        parts.append(f"domain={member.domain}")
    if member.redirect:
        parts.append(f"redirect={member.redirect}")
    if member.distance:
        parts.append(f"distance={member.distance}")
    if member.health_check_interval:
        parts.append(f"health={member.health_check_path}@{member.health_check_interval}ms")
    return "  ".join(parts)


def summary(config: WorkersConfig) -> str:
    """One line per worker, lb members indented under their lb."""
    lines = [
        f"{config.file or 'workers'}: worker.list={','.join(config.worker_list)} "
        f"maintain={config.maintain}s"
    ]
    for name in config.worker_list:
        if name in config.lbs:
            lb = config.lbs[name]
            sticky = "sticky" + ("(force)" if lb.sticky_session_force else "")
            lines.append(
                f"lb {name}: {sticky if lb.sticky_session else 'not sticky'} "
                f"method={lb.method.value} members={len(lb.balance_workers)}"
            )
            lines.extend(f"  {_member_line(m)}" for m in config.lb_members(lb))
            if lb.cluster:  # pyjk: members also join by heartbeat (balancer.cluster_members)
                template = f" template={lb.cluster_template}" if lb.cluster_template else ""
                lines.append(
                    f"  + dynamic members from cluster {lb.cluster}{template} "
                    f"allow={','.join(lb.cluster_allow)}"
                )
        elif name in config.statuses:
            status = config.statuses[name]
            mode = "read-only" if status.read_only else "read-write"
            api = "token set" if status.token else "no API token"
            allow = ",".join(status.allow) or "loopback only"
            lines.append(f"status {name}: {mode}, {api}, allow={allow}")
        elif name in config.members:
            lines.append(f"member {_member_line(config.members[name])}")
    if config.mounts:
        lines.append(f"mounts: {len(config.mounts)} rule(s) from worker.*.mount")
    return "\n".join(lines)
