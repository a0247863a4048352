print("pvzctl: not yet built")
