print("vhost-user-pvz: not yet built")
