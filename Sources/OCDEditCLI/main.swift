print("ocdedit")
