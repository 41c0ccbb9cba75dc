# web, role balancer: a request through it reaches a server and the database.
python3 - <<'PY'
import urllib.request
body = urllib.request.urlopen('http://127.0.0.1/', timeout=10).read().decode()
assert body.startswith('served by ') and '\t' in body, body
PY
