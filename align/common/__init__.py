"""Small pieces every package of the project uses (files, ports): no project imports of their own."""
