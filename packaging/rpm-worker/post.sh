# %post of gearpump-worker (hand-written: cargo-generate-rpm has no systemd macros).
# $1: 1 on a first installation, 2 or more on an upgrade.
if command -v systemd-sysusers >/dev/null 2>&1; then
    systemd-sysusers gearpump-worker.conf || :
else
    getent group gearpump >/dev/null || groupadd -r gearpump || :
    getent passwd gearpump >/dev/null || useradd -r -g gearpump -d /var/lib/gearpump -M \
        -s /sbin/nologin -c "Gearpump master" gearpump || :
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create gearpump-worker.conf || :
else
    install -d -m 0750 -o gearpump -g gearpump /var/lib/gearpump-worker || :
fi
if [ -d /run/systemd/system ]; then
    systemctl daemon-reload >/dev/null 2>&1 || :
fi
if [ "$1" -eq 1 ]; then
    # Enabled, not started: /etc/gearpump/gear.conf first (gearpump-setup --workers), then start it.
    systemctl --no-reload enable gearpump-worker.service >/dev/null 2>&1 || :
fi
