# web, role server: the application stopped.
if [ -f /run/cloud-web.pid ]; then kill "$(cat /run/cloud-web.pid)" 2>/dev/null || true; rm -f /run/cloud-web.pid; fi
