# web, role balancer: nginx in front of every server, round robin. The configuration comes from
# the cloud's server list: when it changes, the facts change and this setup runs again.
{
  echo "upstream cloud_servers {"
  for ip in $CLOUD_IPS_SERVER; do echo "    server $ip:8080 max_fails=1 fail_timeout=5s;"; done
  echo "}"
  echo "server {"
  echo "    listen 80 default_server;"
  echo "    location / {"
  echo "        proxy_pass http://cloud_servers;"
  echo "        proxy_next_upstream error timeout http_502;"
  echo "        proxy_connect_timeout 2s;"
  echo "    }"
  echo "}"
} > /etc/nginx/sites-available/cloud
rm -f /etc/nginx/sites-enabled/default
ln -sf /etc/nginx/sites-available/cloud /etc/nginx/sites-enabled/cloud
nginx -t -q
if service nginx status >/dev/null 2>&1; then service nginx reload >/dev/null; fi
