# web, role server: the application running, detached from this session.
if [ -f /run/cloud-web.pid ] && kill -0 "$(cat /run/cloud-web.pid)" 2>/dev/null; then exit 0; fi
setsid /usr/local/bin/cloud-web >/var/log/cloud-web.log 2>&1 </dev/null &
echo $! > /run/cloud-web.pid
