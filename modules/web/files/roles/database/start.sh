# web, role database: MariaDB running.
service mariadb status >/dev/null 2>&1 || service mariadb start >/dev/null
