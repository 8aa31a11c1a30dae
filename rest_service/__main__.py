from rest_service.server import main

main()
