# web, role database: the greetings can be read.
test "$(mariadb -N -e 'SELECT COUNT(*) FROM cloud.greetings')" -ge 1
