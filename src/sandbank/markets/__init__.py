"""Market mechanisms: the order book exchange, sealed-bid auctions, the task market with
contracts and validators, and messaging. Each registers its actions, events, handlers and
tick hooks with the kernel; none imports oversight."""
