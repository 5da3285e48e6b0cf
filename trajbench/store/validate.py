"""placeholder"""
def validate_store(location):
    raise NotImplementedError
