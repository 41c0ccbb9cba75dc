# web, role database: MariaDB listening on the cloud's network, a database `cloud` with a
# table of greetings, and a read-only user `web` for each server's address. Its password is
# derived from the cloud's guest key ($CLOUD_DIR/cloud.key): never in the facts, a log or an
# argument (it reaches mariadb on stdin).
pw=$(python3 - "$CLOUD_DIR/cloud.key" <<'PY'
import hashlib, hmac, sys
key = open(sys.argv[1], 'rb').read().strip()
print(hmac.new(key, b'web-database-password', hashlib.sha256).hexdigest()[:32])
PY
)
mkdir -p /etc/mysql/mariadb.conf.d
printf '[mysqld]\nbind-address = 0.0.0.0\nskip-name-resolve\n' > /etc/mysql/mariadb.conf.d/60-cloud.cnf
service mariadb restart >/dev/null
{
  echo "CREATE DATABASE IF NOT EXISTS cloud;"
  echo "CREATE TABLE IF NOT EXISTS cloud.greetings (id INT PRIMARY KEY, text VARCHAR(200));"
  echo "REPLACE INTO cloud.greetings VALUES (1, 'hello from the database of $CLOUD_NAME'),"
  echo "  (2, 'these rows come from $CLOUD_IP');"
  for ip in $CLOUD_IPS_SERVER; do
    echo "CREATE USER IF NOT EXISTS 'web'@'$ip' IDENTIFIED BY '$pw';"
    echo "ALTER USER 'web'@'$ip' IDENTIFIED BY '$pw';"
    echo "GRANT SELECT ON cloud.* TO 'web'@'$ip';"
  done
} | mariadb
