# @summary The name of a cloud (the title of a distributed resource), as the types accept it.
type Cloud::Cloudname = Pattern[/\A[A-Za-z0-9][A-Za-z0-9_.-]{0,39}\z/]
