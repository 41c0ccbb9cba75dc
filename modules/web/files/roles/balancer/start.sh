# web, role balancer: nginx running.
service nginx status >/dev/null 2>&1 || service nginx start >/dev/null
