"""placeholder"""
def applicable(*a):
    return False
def transform_filter(w):
    raise NotImplementedError
