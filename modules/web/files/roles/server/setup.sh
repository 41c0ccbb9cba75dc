# web, role server: a small web application on port 8080 that reads the greetings from the
# database and says which server answered. The database password (derived from the cloud's
# guest key, as on the database) goes to a client option file readable by root only.
mkdir -p /etc/cloud-web
umask 077
python3 - "$CLOUD_DIR/cloud.key" "$CLOUD_IPS_DATABASE" > /etc/cloud-web/my.cnf <<'PY'
import hashlib, hmac, sys
key = open(sys.argv[1], 'rb').read().strip()
pw = hmac.new(key, b'web-database-password', hashlib.sha256).hexdigest()[:32]
print('[client]\nhost = %s\nuser = web\npassword = %s\ndatabase = cloud' % (sys.argv[2].split()[0], pw))
PY
umask 022
cat > /usr/local/bin/cloud-web <<'PY'
#!/usr/bin/env python3
# The web cloud's server application: GET / answers which server this is and the greetings
# read from the database (through the mariadb client and /etc/cloud-web/my.cnf).
import http.server, os, subprocess

SLOT, IP = os.environ.get('CLOUD_SLOT', '?'), os.environ.get('CLOUD_IP', '?')

class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            rows = subprocess.run(
                ['mariadb', '--defaults-extra-file=/etc/cloud-web/my.cnf', '-N', '-e',
                 'SELECT id, text FROM greetings ORDER BY id'],
                capture_output=True, text=True, timeout=10, check=True).stdout
            code, body = 200, 'served by %s (%s)\n%s' % (SLOT, IP, rows)
        except Exception as e:  # the balancer tries the next server
            code, body = 502, 'served by %s (%s): database error: %s\n' % (SLOT, IP, e)
        data = body.encode()
        self.send_response(code)
        self.send_header('Content-Type', 'text/plain; charset=utf-8')
        self.send_header('Content-Length', str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass

http.server.ThreadingHTTPServer(('0.0.0.0', 8080), Handler).serve_forever()
PY
chmod 0755 /usr/local/bin/cloud-web
# a changed setup (new database, new facts): the running application restarts
if [ -f /run/cloud-web.pid ]; then kill "$(cat /run/cloud-web.pid)" 2>/dev/null || true; rm -f /run/cloud-web.pid; fi
