# web, role database: MariaDB stopped cleanly before the VM shuts down.
service mariadb stop >/dev/null 2>&1 || true
