# web, role balancer: nginx stopped.
service nginx stop >/dev/null 2>&1 || true
