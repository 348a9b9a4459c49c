"""Historical candles over REST: the venues' candle endpoints as declared tables
(in each venue's home), and the backfill that turns them into bars in the store."""
