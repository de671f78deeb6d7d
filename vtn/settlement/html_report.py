"""placeholder"""
def to_html(result):
    raise NotImplementedError
