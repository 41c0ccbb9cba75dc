# @summary An absolute path that is safe on a command line and in a systemd unit.
#
# Letters, digits and `. _ + , : @ / -` only (no whitespace, quotes, `%` or `$`): `cloud::host`
# puts these paths into cloudd's command line, unquoted.
type Cloud::Path = Pattern[/\A\/[A-Za-z0-9._+,:@\/-]*\z/]
