"""A network between the client and the services: named profiles (bandwidth, round
trip, jitter, loss), and a network namespace with a veth pair that makes one."""
