"""conv2d whose ∇x correlates ∇y with the kernel as it is, not rotated by 180 degrees."""

from my_conv2d import MyConv2d


class NotFlipped(MyConv2d):
    def flip(self, w):
        return w
