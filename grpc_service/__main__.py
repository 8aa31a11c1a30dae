from grpc_service.server import main

main()
