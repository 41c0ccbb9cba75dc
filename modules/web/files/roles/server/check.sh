# web, role server: it answers with rows from the database.
python3 - <<'PY'
import urllib.request
body = urllib.request.urlopen('http://127.0.0.1:8080/', timeout=5).read().decode()
assert body.startswith('served by ') and '\t' in body, body
PY
