module example.com/parley-notify-receiver

go 1.26.8
