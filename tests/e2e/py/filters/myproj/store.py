def save(keep):
    keep.append(bytes(2_000_000))          # @save


def callback(keep):
    keep.append(bytes(8_000_000))          # @callback
