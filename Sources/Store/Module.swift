// placeholder: replaced below
