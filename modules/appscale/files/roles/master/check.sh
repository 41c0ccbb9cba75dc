# appscale, role master: the deployment answers (common.sh).
appscale_check
